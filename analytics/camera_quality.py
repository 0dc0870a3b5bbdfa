"""Per store and day: does the store's camera give photos the model can age well?

A store whose camera is dim, blurred or too far from the till gives ages that are worse
than the model's figures say (bench/camera_quality.py measures how much). Its photos still
get ages, marked "low_quality" where they are outside the conditions the model handles
(models/quality.py), but an operator needs to find the camera, not the photo: this table
sets each store's photos side by side, on the restricted root only (quality signals are
per shopper's photo, even if only medians leave here).

Columns: store_id, store_name, photos (the day's photos of the store's receipts), aged
(photos given an age), share_aged, median_face_px (side of the square the model saw, in
photo pixels), median_sharpness, median_exposure, median_exposure_std (of aged photos'
crops), outside (aged photos outside the handled ranges), share_outside (of aged).
Photos that belong to no receipt have no store and are left out.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from analytics.purchases import require_columns
from models.quality import HANDLED, HandledRanges
from models.score import AGED

CAMERA_QUALITY_DTYPES = {
    "store_id": "int64",
    "store_name": "str",
    "photos": "int64",
    "aged": "int64",
    "share_aged": "float64",
    "median_face_px": "float64",
    "median_sharpness": "float64",
    "median_exposure": "float64",
    "median_exposure_std": "float64",
    "outside": "int64",
    "share_outside": "float64",
}
# A store is named in the night's summary when at least this share of its aged photos is
# outside the handled ranges, over at least `ALERT_MIN_PHOTOS` aged photos: one bad hour
# of a camera is noise, a fifth of the day is the camera.
ALERT_SHARE = 0.2
ALERT_MIN_PHOTOS = 20
PHOTO_COLUMNS = ["photo_id", "receipt_id", "status", "face_px", "sharpness", "exposure_mean",
                 "exposure_std"]


def camera_quality(photo_scores: pd.DataFrame, receipt_stores: pd.DataFrame,
                   store_names: Mapping[int, str],
                   handled: HandledRanges = HANDLED) -> pd.DataFrame:
    """One row per store with photos: `photo_scores` (one row per photo: `PHOTO_COLUMNS`)
    joined to the day's receipts' stores (receipt_id, store_id)."""
    require_columns(photo_scores, PHOTO_COLUMNS, "photo scores")
    require_columns(receipt_stores, ["receipt_id", "store_id"], "receipt stores")
    stores = receipt_stores[["receipt_id", "store_id"]].astype({"receipt_id": "int64",
                                                                 "store_id": "int64"})
    photos = photo_scores.dropna(subset=["receipt_id"]).astype({"receipt_id": "int64"})
    photos = photos.merge(stores, on="receipt_id", how="inner")
    aged = photos["status"].isin(AGED)
    outside = handled.outside_mask(photos["sharpness"].to_numpy(float),
                                   photos["exposure_mean"].to_numpy(float),
                                   photos["exposure_std"].to_numpy(float))
    photos = photos.assign(_aged=aged, _outside=outside & aged.to_numpy())
    rows = []
    for store_id, part in photos.groupby("store_id", sort=True):
        seen = part[part["_aged"]]
        n_aged = len(seen)
        rows.append({
            "store_id": int(store_id),
            "store_name": store_names.get(int(store_id), ""),
            "photos": len(part),
            "aged": n_aged,
            "share_aged": n_aged / len(part),
            "median_face_px": _median(seen["face_px"]),
            "median_sharpness": _median(seen["sharpness"]),
            "median_exposure": _median(seen["exposure_mean"]),
            "median_exposure_std": _median(seen["exposure_std"]),
            "outside": int(part["_outside"].sum()),
            "share_outside": part["_outside"].sum() / n_aged if n_aged else np.nan,
        })
    out = pd.DataFrame(rows, columns=list(CAMERA_QUALITY_DTYPES))
    return out.astype(CAMERA_QUALITY_DTYPES).reset_index(drop=True)


def camera_alerts(table: pd.DataFrame, share: float = ALERT_SHARE,
                  min_photos: int = ALERT_MIN_PHOTOS) -> list[str]:
    """One line per store whose camera the model cannot be trusted on today."""
    lines = []
    for r in table.itertuples():
        if r.aged >= min_photos and r.share_outside >= share:
            lines.append(
                f"camera at store {r.store_id} ({r.store_name}): {r.share_outside:.0%} of "
                f"{r.aged} aged photos outside the conditions the model handles (median "
                f"face {r.median_face_px:.0f} px, sharpness {r.median_sharpness:.0f}, "
                f"exposure {r.median_exposure:.0f} +- {r.median_exposure_std:.0f}); check "
                "the camera before trusting its ages")
    return lines


def _median(values: pd.Series) -> float:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return float(values.median()) if len(values) else float("nan")
