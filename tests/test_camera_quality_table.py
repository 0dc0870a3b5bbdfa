"""The restricted `camera_quality` table (analytics/camera_quality.py): per store and day,
from the photos' quality signals; privacy: restricted root only, marketing tables as they
were without it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.camera_quality import CAMERA_QUALITY_DTYPES, camera_alerts, camera_quality
from analytics.config import NightConfig
from analytics.day_tables import CAMERA_QUALITY
from models.quality import HANDLED
from models.score import QUALITY_COLUMNS
from tests.month import day_tables
from tests.test_day_aggregates import AGES, BINS, DAY, RECEIPTS, engine  # noqa: F401

GOOD = (400.0, 120.0, 45.0)  # sharpness, exposure mean, spread: inside the handled ranges
DARK = (200.0, HANDLED.severe_dark - 10, 40.0)  # severely dark: outside on its own
BLURRED = (HANDLED.blurred - 10, 120.0, HANDLED.flat - 2)  # blurred and flat: two poor


def _photo(pid, receipt, status, quality, face_px=120):
    sharp, mean, std = quality if quality else (np.nan, np.nan, np.nan)
    return {"photo_id": pid, "receipt_id": receipt, "status": status,
            "face_px": face_px if quality else 0, "sharpness": sharp, "exposure_mean": mean,
            "exposure_std": std}


def test_camera_quality_per_store():
    photos = pd.DataFrame([
        _photo(1, 10, "ok", GOOD, 150), _photo(2, 11, "ok", GOOD, 130),
        _photo(3, 12, "low_quality", DARK, 90), _photo(4, 13, "no_face", None),
        _photo(5, 20, "low_quality", BLURRED, 60), _photo(6, 21, "several_faces", GOOD, 80),
        _photo(7, None, "ok", GOOD),  # no receipt: no store
        _photo(8, 22, "quarantined", None),
    ])
    photos["receipt_id"] = photos["receipt_id"].astype("Int64")
    stores = pd.DataFrame({"receipt_id": [10, 11, 12, 13, 20, 21, 22],
                           "store_id": [1, 1, 1, 1, 2, 2, 2]})
    table = camera_quality(photos, stores, {1: "Northgate", 2: "Docks"})
    assert list(table.columns) == list(CAMERA_QUALITY_DTYPES)
    one, two = (table.set_index("store_id").loc[s] for s in (1, 2))
    assert (one["photos"], one["aged"], one["outside"]) == (4, 3, 1)
    assert one["share_aged"] == pytest.approx(0.75)
    assert one["share_outside"] == pytest.approx(1 / 3)
    assert one["median_face_px"] == 130 and one["median_sharpness"] == 400
    assert (two["photos"], two["aged"], two["outside"]) == (3, 2, 1)
    assert two["store_name"] == "Docks" and two["median_face_px"] == 70
    alerts = camera_alerts(table, share=0.4, min_photos=2)
    assert len(alerts) == 1 and "store 2 (Docks): 50%" in alerts[0]
    assert camera_alerts(table) == []  # too few aged photos to name a camera
    empty = camera_quality(photos.iloc[:0], stores, {})
    assert empty.empty and list(empty.columns) == list(CAMERA_QUALITY_DTYPES)


def _estimates() -> pd.DataFrame:
    rows = [(rid, age) for rid, age in AGES.items()]
    frame = pd.DataFrame(rows, columns=["receipt_id", "age"]).astype({"age": "float64"})
    from analytics.age_groups import assign_age_groups

    frame["age_group"] = assign_age_groups(frame["age"], BINS)
    frame["photo_id"] = frame["receipt_id"] * 10
    frame["p_under"] = np.nan
    frame["face_count"] = 1
    frame["status"] = np.where(frame["receipt_id"] == 1, "low_quality", "ok")
    for column, value in zip(QUALITY_COLUMNS, GOOD):
        frame[column] = value
    return frame


def test_camera_quality_is_restricted_and_marketing_is_unchanged(engine, tmp_path):  # noqa: F811
    estimates = _estimates()
    photos = estimates[["photo_id", "receipt_id", "status"]].assign(
        face_px=100, sharpness=GOOD[0], exposure_mean=GOOD[1], exposure_std=GOOD[2])
    photos.loc[photos["status"] == "low_quality", "exposure_mean"] = DARK[1]
    options = NightConfig(tmp_path / "marketing", tmp_path / "restricted", min_cell=1,
                          challenge_age=25.0, today=DAY)
    card = {"metrics": {"val_mae": 6.0}}
    without = day_tables(engine, DAY, estimates, card, options)
    with_quality = day_tables(engine, DAY, estimates, card, options, photo_scores=photos)
    assert CAMERA_QUALITY in with_quality.restricted
    assert CAMERA_QUALITY not in with_quality.marketing
    assert set(with_quality.marketing) == set(without.marketing)
    for name, frame in without.marketing.items():
        pd.testing.assert_frame_equal(with_quality.marketing[name], frame)
        assert not set(QUALITY_COLUMNS) & set(with_quality.marketing[name].columns)
    table = with_quality.restricted[CAMERA_QUALITY]
    stores_with_photos = {RECEIPTS[r][0] for r in AGES if r in RECEIPTS and
                          RECEIPTS[r][2].date() == DAY}
    assert set(table["store_id"]) == stores_with_photos
    assert table["outside"].sum() == 1
    # Receipt 1 sold beer to a 19-year-old estimate from a low-quality photo: the compliance
    # row says so, and the day's counts say how many flags rest on such photos.
    flagged = with_quality.restricted["compliance"].set_index("receipt_id")
    assert flagged.loc[1, "estimate_status"] == "low_quality"
    assert with_quality.counts["flagged_low_quality"] == 1


def test_the_night_summary_names_the_camera_and_the_low_quality_flags(capsys):
    import datetime as dt

    from analytics.pipeline import RunSummary
    from jobs.runner import print_summary

    counts = {"photos": 10, "scored": 9, "no_face": 1, "quarantined": 0, "receipts": 10,
              "cells": 4, "suppressed_cells": 0, "ok": 5, "low_quality": 4, "flagged": 3,
              "flagged_low_quality": 2, "alcohol_sales": 6}
    summary = RunSummary("r", dt.date(2026, 12, 1), counts=counts,
                         camera_alerts=["camera at store 1 (Northgate): 40% of 9 aged ..."])
    print_summary(summary)
    out = capsys.readouterr().out
    assert "low quality 40.0 %" in out
    assert "3 flagged of 6 age-restricted sales (2 on low-quality photos)" in out
    assert "camera at store 1 (Northgate)" in out


def test_training_records_the_camera_conditions():
    from click.testing import CliRunner

    from jobs.cli import cli
    from models.card import camera_augmentation, camera_conditions
    from models.recipe import TrainConfig

    assert TrainConfig().camera_prob == 0.0
    assert camera_conditions(0.0) is None and camera_augmentation(0.0) == ""
    entry = camera_conditions(0.5)
    assert entry["share_of_faces"] == 0.5 and set(entry["ranges"]) >= {"exposure", "roll"}
    assert "50% of faces" in camera_augmentation(0.5)
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert "--camera-aug" in result.output
