"""A generated month for the marketing and compliance tests: purchases with the demo's
planted age preferences, hand-made age estimates (no image model: the estimates are planted
directly), and every day's tables built and written by the real day-table code.

Planted on top of the demo generator:
- estimates: the true age (to 0.1 year) for 95% of receipts, none for the rest (unknown);
- false flags: some alcohol buyers aged 30 or more get an estimate of 21-23;
- noise: a product ("Absinthe sample") bought on 6 receipts, 5 of them by 18-24 year
  olds: a huge raw lift from too few receipts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analytics.age_groups import AgeBins, assign_age_groups
from analytics.config import NightConfig
from analytics.day_tables import (
    DayTables,
    build_day_tables,
    read_day_aggregates,
    read_window,
    write_day_tables,
)
from demo.purchases import generate_day
from sql.engine import make_engine
from sql.queries import create_schema, insert_frame, insert_missing

FIRST_DAY = dt.date(2026, 11, 1)  # the month ends on the README examples' day, 2026-11-28
DAYS = 28
LAST_DAY = FIRST_DAY + dt.timedelta(days=DAYS - 1)
BINS = AgeBins.parse("0-17,18-24,25-34,35-44,45-54,55-64,65+")
MIN_CELL = 10
NOISE_PRODUCT = 900
NOISE_NAME = "Absinthe sample"
CARD = {"version": "month-test", "metrics": {"val_mae": 6.0, "by_band": {
    "0-12": {"n": 10, "mae": 3.0}, "13-17": {"n": 10, "mae": 4.0},
    "18-24": {"n": 10, "mae": 5.0}, "25-34": {"n": 10, "mae": None}}}}


@dataclass(frozen=True)
class Month:
    db_url: str
    options: NightConfig
    estimates: pd.DataFrame  # receipt_id, photo_id, age, age_group, face_count, day
    shoppers: pd.DataFrame  # receipt_id, store_id, ts, true_age, day


def day_tables(engine, day: dt.date, estimates: pd.DataFrame, card: dict,
               config: NightConfig, photo_scores: pd.DataFrame | None = None) -> DayTables:
    """The day's tables as the night makes them (analytics/pipeline.write_scored_day): its
    aggregates and window read, then built; nothing written."""
    aggregates = read_day_aggregates(engine, day, estimates, card, config)
    return build_day_tables(day, estimates, aggregates, read_window(day, config), card,
                            config, photo_scores=photo_scores)


def build_month(db_url: str, root: Path, *, stores: int = 3, per_store: int = 120,
                seed: int = 11) -> Month:
    """Generate DAYS days, plant estimates and noise, build and write every day's tables."""
    engine = make_engine(db_url)
    create_schema(engine)
    rng = np.random.default_rng(seed)
    shoppers, estimates = [], []
    for i in range(DAYS):
        day = FIRST_DAY + dt.timedelta(days=i)
        ages = rng.uniform(8, 85, stores * per_store)
        day_shoppers = generate_day(engine, day, stores=stores, receipts_per_store=per_store,
                                    shopper_ages=ages, seed=seed + i).assign(day=day)
        shoppers.append(day_shoppers)
    shoppers = pd.concat(shoppers, ignore_index=True)
    estimates = _plant_estimates(engine, shoppers, rng)
    _plant_noise(engine, shoppers, estimates)

    options = NightConfig(root / "marketing", root / "restricted", min_cell=MIN_CELL,
                          challenge_age=25.0, window_days=DAYS, compliance_retention_days=90,
                          today=LAST_DAY + dt.timedelta(days=1))
    for i in range(DAYS):
        day = FIRST_DAY + dt.timedelta(days=i)
        todays = estimates[estimates["day"] == day].drop(columns="day")
        tables = day_tables(engine, day, todays, CARD, options)
        write_day_tables(tables, day, options, {"run_id": f"month-{i}"}, "month-test")
    engine.dispose()
    return Month(db_url, options, estimates, shoppers)


def restricted_receipts(engine, day: dt.date | None = None) -> set[int]:
    """Receipts with an age-restricted product, read straight from the database."""
    from sql.queries import purchase_lines_for_day

    days = [day] if day else [FIRST_DAY + dt.timedelta(days=i) for i in range(DAYS)]
    found: set[int] = set()
    for d in days:
        lines = purchase_lines_for_day(engine, d)
        found |= set(lines.loc[lines["age_restricted"], "receipt_id"].tolist())
    return found


def _plant_estimates(engine, shoppers: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    alcohol = restricted_receipts(engine)
    ages = shoppers["true_age"].round(1).to_numpy(copy=True)
    older_drinkers = shoppers["receipt_id"].isin(alcohol) & (shoppers["true_age"] >= 30)
    fooled = older_drinkers & (rng.random(len(shoppers)) < 0.1)
    ages[fooled.to_numpy()] = rng.uniform(21, 23, int(fooled.sum())).round(1)
    frame = pd.DataFrame({"receipt_id": shoppers["receipt_id"], "photo_id":
                          shoppers["receipt_id"], "age": ages, "face_count": 1,
                          "day": shoppers["day"]})
    frame = frame[rng.random(len(frame)) < 0.95].reset_index(drop=True)
    frame["age_group"] = assign_age_groups(frame["age"], BINS)
    return frame[["receipt_id", "photo_id", "age", "age_group", "face_count", "day"]]


def _plant_noise(engine, shoppers: pd.DataFrame, estimates: pd.DataFrame) -> None:
    """The noise product on 5 receipts of 18-24 year olds and 1 of a 50-year-old."""
    insert_missing(engine, "products", pd.DataFrame({
        "product_id": [NOISE_PRODUCT], "name": [NOISE_NAME], "category": ["spirits"],
        "age_restricted": [True]}), "product_id")
    seen = shoppers.merge(estimates[["receipt_id", "age"]], on="receipt_id")
    true_and_seen = seen["true_age"].round(1) == seen["age"]
    young = seen[true_and_seen & seen["age"].between(18, 24.9)]
    older = seen[true_and_seen & seen["age"].between(45, 54.9)]
    chosen = pd.concat([young.sample(5, random_state=1), older.sample(1, random_state=1)])
    insert_frame(engine, "receipt_lines", pd.DataFrame({
        "receipt_id": chosen["receipt_id"].to_numpy(), "line_no": 99,
        "product_id": NOISE_PRODUCT, "quantity": 1, "amount": 4.5}))
