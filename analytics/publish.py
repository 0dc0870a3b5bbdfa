"""Copy one day's marketing tables from Parquet into the database, for analysts who use SQL.

Only the marketing root is read: the database copy carries exactly what analysts may see
(aggregates, small cells suppressed), never the restricted tables.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from analytics.day_tables import AGE_MIX, RECOMMENDATIONS, SALES
from analytics.parquet import PartitionNotFound, read_partition
from sql import queries
from sql.engine import with_retries


def publish_day(engine: sa.Engine, output_root: Path, day: dt.date) -> dict[str, int]:
    """Replace `day` in mkt_sales_by_age_group, mkt_recommendations and mkt_age_mix (one
    transaction; a day written before age_mix existed publishes the other two).

    Raises analytics.parquet.PartitionNotFound when the nightly run has not written the day.
    Returns the rows now in each table for that day.
    """
    sales = read_partition(output_root, SALES, day)
    recommendations = read_partition(output_root, RECOMMENDATIONS, day)
    try:
        age_mix = read_partition(output_root, AGE_MIX, day)
    except PartitionNotFound:
        age_mix = None
    with_retries(lambda: queries.create_marketing_tables(engine))
    return with_retries(lambda: queries.replace_marketing_day(engine, day, sales,
                                                             recommendations, age_mix))
