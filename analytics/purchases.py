"""Attach each receipt's estimated age group to its purchase lines.

Receipts without a photo or a usable face stay in the data as "unknown": dropping them would
make the age-group tables look like the whole day's sales when they are not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from analytics.age_groups import UNKNOWN

LINE_COLUMNS = ["receipt_id", "store_id", "store_name", "category", "quantity", "amount"]
ESTIMATE_COLUMNS = ["receipt_id", "age", "age_group", "face_count"]


class MissingColumnsError(ValueError):
    """A frame handed to an analytics function lacks columns it needs."""


class DuplicateEstimatesError(ValueError):
    """More than one age estimate for a receipt: the join would duplicate its lines."""


def require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Fail early, naming the missing columns, rather than with a KeyError deep inside."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MissingColumnsError(f"{what} lack column(s): {', '.join(missing)}")


def join_purchases(lines: pd.DataFrame, estimates: pd.DataFrame) -> pd.DataFrame:
    """`lines` plus age, age_group and face_count of their receipt ("unknown"/NA without one).

    Keeps the order and number of `lines`. face_count stays NA for receipts without a photo, 0
    for a photo without a face. age_group is Categorical (estimates' categories + "unknown").
    """
    require_columns(lines, LINE_COLUMNS, "purchase lines")
    require_columns(estimates, ESTIMATE_COLUMNS, "age estimates")
    duplicated = estimates["receipt_id"].dropna().duplicated()
    if duplicated.any():
        ids = estimates["receipt_id"].dropna()[duplicated].unique()[:5].tolist()
        raise DuplicateEstimatesError(f"several age estimates for receipt(s) {ids}")

    categories = _categories(estimates["age_group"])
    right = estimates[ESTIMATE_COLUMNS].dropna(subset=["receipt_id"]).astype(
        {"receipt_id": lines["receipt_id"].dtype, "face_count": "Int64", "age": "float64"}
    )
    extra = [c for c in ESTIMATE_COLUMNS[1:] if c in lines.columns]
    joined = lines.drop(columns=extra).merge(right, on="receipt_id", how="left", sort=False)
    joined["age_group"] = pd.Categorical(
        joined["age_group"].astype(object).where(joined["age_group"].notna(), UNKNOWN),
        categories=categories,
    )
    joined.index = lines.index
    return joined


def _categories(groups: pd.Series) -> list[str]:
    """Keep the age order of a Categorical; otherwise sorted labels; "unknown" always last."""
    if isinstance(groups.dtype, pd.CategoricalDtype):
        labels = [str(c) for c in groups.cat.categories]
    else:
        labels = sorted((str(g) for g in groups.dropna().unique()), key=_age_order)
    return [label for label in labels if label != UNKNOWN] + [UNKNOWN]


def _age_order(label: str) -> tuple[int, str]:
    """Order by the leading number, so "5-9" comes before "10-17"."""
    match = re.match(r"\d+", label)
    return (int(match.group()) if match else 10**9, label)
