"""Challenge 25 checks for store managers: restricted outputs only, never for marketing.

A sale of an age-restricted product to a shopper whose estimated age is under the threshold
is *flagged*. An estimate is not an age: a 27-year-old may be estimated at 23. So each
flagged sale carries the model's known error for its age band and the probability that the
shopper was in fact at least the threshold age, and the per-cashier summary sets the
flagged count next to the number of false flags that model error alone would produce. A
manager then sees whether a cashier's flags stand out from the noise before acting.

Method (stated here because managers will ask). With a model that outputs an age
distribution (the shipped one does), each estimate comes with the model's own calibrated
probability that the shopper is under the challenge age (`p_under`, models/calibrate.py): a
sale is flagged when that probability reaches the operating point on the model's card
(`calibration.flag_probability`, chosen on validation faces; `--flag-probability`
overrides it), and P(true age >= threshold) = 1 - p_under.

For models without a distribution, the card's mean absolute error (MAE) per band
(`metrics.by_band`) or overall (`metrics.val_mae`) stands in: a sale is flagged when the
estimate is under the threshold, the error is taken as Gaussian with sigma = sqrt(pi/2) *
MAE of the estimate's band, and P(true age >= threshold | estimate) = 1 - Phi((threshold -
estimate) / sigma). Either way, expected false flags are the sum of P(true age >= threshold)
over flagged sales: what model error alone would produce, to tell a cashier with 30
unexplained flags from one with 3.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from analytics.parquet import union_days_sql
from analytics.purchases import require_columns

SIGMA_PER_MAE = math.sqrt(math.pi / 2)
_BAND = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)|\+)\s*$")

COMPLIANCE_DTYPES = {
    "receipt_id": "int64",
    "store_id": "int64",
    "store_name": "str",
    "cashier_id": "int64",
    "ts": "datetime64[us]",
    "age": "float64",
    "error_band": "str",
    "model_mae": "float64",
    "p_under": "float64",
    "p_at_least_threshold": "float64",
    "id_checked": "boolean",
    "challenge_age": "float64",
    "flag_probability": "float64",  # the operating point used; NaN: flagged by age alone
    # The estimate's status (models/score.py): "low_quality" means the photo is outside the
    # camera conditions the model handles, so its age is less sure than `model_mae` says.
    "estimate_status": "str",
}
SALES_DTYPES = {
    "store_id": "int64",
    "store_name": "str",
    "cashier_id": "int64",
    "alcohol_sales": "int64",
    "with_age": "int64",
    "flagged": "int64",
}
SUMMARY_DTYPES = {
    "level": "str",  # "store" or "cashier"
    "store_id": "int64",
    "store_name": "str",
    "cashier_id": "Int64",  # null on store rows
    "alcohol_sales": "int64",
    "with_age": "int64",
    "flagged": "int64",
    "flagged_rate": "float64",
    "expected_false_flags": "float64",
    "expected_false_flag_rate": "float64",
    "flagged_id_checked": "int64",
    "flagged_no_id_check": "int64",
    "flagged_check_not_recorded": "int64",
    "expected_false_flags_no_id_check": "float64",
    "window_start": "object",  # datetime.date
    "window_end": "object",
    "window_days": "int64",
    "challenge_age": "float64",
}


class ModelCardError(ValueError):
    """The model card has no error figures to judge flags by."""


@dataclass(frozen=True)
class ErrorBands:
    """Known mean absolute error per estimated-age band, with an overall fallback.

    `bands` are (label, lowest age, highest age or None for open-ended, mae).
    """

    bands: tuple[tuple[str, int, int | None, float], ...]
    overall: float | None

    @classmethod
    def from_card(cls, card: Mapping[str, object]) -> ErrorBands:
        """Read card["metrics"]["by_band"][label]["mae"] where present, else val_mae only.

        Bands without an MAE (no faces of that age in the evaluation) fall back to the
        overall figure. Raises ModelCardError when the card has neither.
        """
        metrics = card.get("metrics") or {}
        if not isinstance(metrics, Mapping):
            metrics = {}
        overall = _positive(metrics.get("val_mae"))
        bands = []
        by_band = metrics.get("by_band") or {}
        if isinstance(by_band, Mapping):
            for label, stats in by_band.items():
                match = _BAND.match(str(label))
                mae = _positive(stats.get("mae")) if isinstance(stats, Mapping) else None
                if match and mae is not None:
                    high = int(match.group(2)) if match.group(2) else None
                    bands.append((str(label), int(match.group(1)), high, mae))
        if not bands and overall is None:
            raise ModelCardError("the model card has neither metrics.by_band nor "
                                 "metrics.val_mae: the flags' error is unknown")
        return cls(tuple(sorted(bands, key=lambda b: b[1])), overall)

    def lookup(self, ages: pd.Series) -> tuple[pd.Series, pd.Series]:
        """(band label, MAE) for each age; "overall" and val_mae outside every band."""
        years = np.floor(pd.to_numeric(ages, errors="coerce").to_numpy(dtype="float64"))
        labels = np.full(len(years), "overall", dtype=object)
        maes = np.full(len(years), np.nan if self.overall is None else self.overall)
        for label, low, high, mae in self.bands:
            inside = (years >= low) & ((years <= high) if high is not None else True)
            labels[inside] = label
            maes[inside] = mae
        return pd.Series(labels, index=ages.index), pd.Series(maes, index=ages.index)


def p_at_least(threshold: float, ages: pd.Series, mae: pd.Series) -> pd.Series:
    """P(true age >= threshold | estimate) under the Gaussian error stated above."""
    sigma = np.asarray(mae, dtype="float64") * SIGMA_PER_MAE
    z = (threshold - np.asarray(ages, dtype="float64")) / sigma
    erfc = np.vectorize(math.erfc, otypes=[float])
    p = 0.5 * erfc(z / math.sqrt(2)) if len(z) else np.array([], dtype=float)
    return pd.Series(p, index=ages.index)


def compliance_rows(
    flagged: pd.DataFrame, store_names: Mapping[int, str], bands: ErrorBands,
    challenge_age: float, flag_probability: float | None = None,
) -> pd.DataFrame:
    """The day's flagged sales (day_aggregates.aggregate_day's `flagged`) with the model error.

    One row per receipt: store, cashier, time, estimated age, the model's P(under
    challenge_age) where it has one, the error band and its MAE, P(true age >=
    challenge_age) and whether the till recorded an ID check; with `estimate_status` in
    `flagged`, the estimate's status (a low-quality photo's age is less sure).
    """
    require_columns(flagged, ["receipt_id", "store_id", "cashier_id", "ts", "age",
                              "id_checked"], "flagged sales")
    band, mae = bands.lookup(flagged["age"])
    under = (pd.to_numeric(flagged["p_under"], errors="coerce") if "p_under" in flagged
             else pd.Series(np.nan, index=flagged.index))
    at_least = p_at_least(challenge_age, flagged["age"], mae)
    rows = flagged.assign(
        store_name=flagged["store_id"].map(store_names),
        error_band=band, model_mae=mae, p_under=under,
        p_at_least_threshold=(1.0 - under).where(under.notna(), at_least),
        challenge_age=float(challenge_age),
        flag_probability=np.nan if flag_probability is None else float(flag_probability),
        estimate_status=(flagged["estimate_status"].fillna("").astype(str)
                         if "estimate_status" in flagged else ""))
    return _typed(rows, COMPLIANCE_DTYPES)


def compliance_sales(sales: pd.DataFrame, store_names: Mapping[int, str]) -> pd.DataFrame:
    """The day's alcohol sales per store x cashier: the denominators of the flagged rates."""
    require_columns(sales, ["store_id", "cashier_id", "alcohol_sales", "with_age", "flagged"],
                    "alcohol sales")
    return _typed(sales.assign(store_name=sales["store_id"].map(store_names)), SALES_DTYPES)


SUMMARY_INPUT_COLUMNS = ["store_id", "cashier_id", "p_at_least_threshold", "id_checked"]
MARK_COLUMNS = ["expected_false_flags", "flagged_id_checked", "flagged_no_id_check",
                "flagged_check_not_recorded", "expected_false_flags_no_id_check"]


def flag_marks(days: Iterable[pd.DataFrame | Path]) -> pd.DataFrame:
    """Per store x cashier, what the window's flagged sales add up to (`MARK_COLUMNS`):
    expected false flags, and flagged sales by ID-check record. `days` are compliance rows,
    frames or Parquet files of them; only `SUMMARY_INPUT_COLUMNS` are read.

    Summed in DuckDB straight from the files: a busy month holds millions of flagged rows,
    which need never become one pandas frame.
    """
    con = duckdb.connect()
    try:
        union = union_days_sql(con, [_summary_input(d) if isinstance(d, pd.DataFrame) else d
                                     for d in days], SUMMARY_INPUT_COLUMNS)
        if union is None:
            return pd.DataFrame(columns=["store_id", "cashier_id", *MARK_COLUMNS])
        marks = con.sql(f"""
            WITH rows AS (
                SELECT CAST(store_id AS BIGINT) AS store_id,
                       CAST(cashier_id AS BIGINT) AS cashier_id,
                       CAST(p_at_least_threshold AS DOUBLE) AS p,
                       CAST(id_checked AS BOOLEAN) AS checked
                FROM ({union})
            )
            SELECT store_id, cashier_id,
                   coalesce(SUM(p), 0.0) AS expected_false_flags,
                   count(*) FILTER (WHERE checked) AS flagged_id_checked,
                   count(*) FILTER (WHERE NOT checked) AS flagged_no_id_check,
                   count(*) FILTER (WHERE checked IS NULL) AS flagged_check_not_recorded,
                   coalesce(SUM(p) FILTER (WHERE NOT checked), 0.0)
                       AS expected_false_flags_no_id_check
            FROM rows GROUP BY store_id, cashier_id
        """).to_arrow_table().to_pandas()
    finally:
        con.close()
    return marks.astype({"store_id": "int64", "cashier_id": "int64",
                         **{c: "float64" if c.startswith("expected") else "int64"
                            for c in MARK_COLUMNS}})


def _summary_input(flagged: pd.DataFrame) -> pd.DataFrame:
    require_columns(flagged, SUMMARY_INPUT_COLUMNS, "compliance rows")
    return flagged[SUMMARY_INPUT_COLUMNS].astype(
        {"store_id": "int64", "cashier_id": "int64", "p_at_least_threshold": "float64",
         "id_checked": "boolean"})


def compliance_summary(
    flagged: pd.DataFrame, sales: pd.DataFrame, *, window_start: dt.date,
    window_end: dt.date, window_days: int, challenge_age: float,
) -> pd.DataFrame:
    """Per store and per cashier over a window: flagged rate and the false flags to expect.

    `flagged` is the window's compliance rows, `sales` its daily compliance_sales rows.
    flagged_rate = flagged / alcohol_sales. expected_false_flags = sum over flagged sales of
    P(true age >= challenge_age); flagged - expected_false_flags is what model noise does not
    explain. Flagged sales are split by the till's ID-check record (checked, not checked,
    not recorded), with the false flags to expect among the unchecked ones.
    """
    return summarise_marks(flag_marks([flagged]), sales, window_start=window_start,
                           window_end=window_end, window_days=window_days,
                           challenge_age=challenge_age)


def summarise_marks(
    marks: pd.DataFrame, sales: pd.DataFrame, *, window_start: dt.date,
    window_end: dt.date, window_days: int, challenge_age: float,
) -> pd.DataFrame:
    """`compliance_summary` from the window's `flag_marks` and its compliance_sales rows."""
    require_columns(marks, ["store_id", "cashier_id", *MARK_COLUMNS], "flag marks")
    require_columns(sales, list(SALES_DTYPES), "compliance sales")
    names = sales.groupby("store_id")["store_name"].last()
    parts = []
    for level, keys in (("store", ["store_id"]), ("cashier", ["store_id", "cashier_id"])):
        totals = sales.groupby(keys)[["alcohol_sales", "with_age", "flagged"]].sum()
        flags = marks.groupby(keys)[MARK_COLUMNS].sum()
        part = totals.join(flags, how="left").fillna(0).reset_index()
        parts.append(part.assign(level=level))
    out = pd.concat(parts, ignore_index=True)
    out["store_name"] = out["store_id"].map(names)
    sold = out["alcohol_sales"].where(out["alcohol_sales"] > 0)
    out["flagged_rate"] = out["flagged"] / sold
    out["expected_false_flag_rate"] = out["expected_false_flags"] / out["flagged"].where(
        out["flagged"] > 0)
    out = out.assign(window_start=window_start, window_end=window_end,
                     window_days=window_days, challenge_age=float(challenge_age))
    return _typed(out, SUMMARY_DTYPES)


def _positive(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _typed(frame: pd.DataFrame, dtypes: Mapping[str, str]) -> pd.DataFrame:
    out = frame.reindex(columns=list(dtypes))
    return out.astype({c: t for c, t in dtypes.items() if t != "object"}).reset_index(
        drop=True)
