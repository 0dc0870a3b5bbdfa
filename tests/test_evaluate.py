"""Metrics checked against numbers worked out by hand on a fixed 12-row set."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from PIL import Image

from models.evaluate import (
    AGE_BANDS,
    BAND_LABELS,
    age_band_labels,
    evaluate_ages,
    format_report,
    plot_evaluation,
)

# real, pred, error (pred - real), gender (0 male, 1 female)
ROWS = [
    (5, 8, +3, 0),  #    0-12
    (10, 7, -3, 0),  #   0-12
    (14, 20, +6, 0),  #  13-17, under 25 -> flagged
    (16, 27, +11, 0),  # 13-17, not flagged
    (17, 24, +7, 0),  #  13-17, under 25 -> flagged
    (20, 22, +2, 0),  #  18-24
    (24, 30, +6, 1),  #  18-24
    (30, 24, -6, 1),  #  25-34, 30+, under 25 -> flagged
    (33, 35, +2, 1),  #  25-34, 30+
    (40, 37, -3, 1),  #  35-49, 30+
    (58, 50, -8, 1),  #  50-64, 30+
    (70, 66, -4, 1),  #  65+,   30+
]


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        [(r, p, g) for r, p, _, g in ROWS], columns=["real_age", "pred_age", "gender"]
    )


def test_overall_metrics_match_hand_computation(frame: pd.DataFrame) -> None:
    m = evaluate_ages(frame)
    assert m["n"] == 12
    # |errors| 3+3+6+11+7+2+6+6+2+3+8+4 = 61 -> 61 / 12
    assert m["mae"] == pytest.approx(61 / 12)
    # squares 9+9+36+121+49+4+36+36+4+9+64+16 = 393 -> sqrt(393 / 12) = sqrt(32.75)
    assert m["rmse"] == pytest.approx(math.sqrt(32.75))
    # signed 3-3+6+11+7+2+6-6+2-3-8-4 = 13 -> 13 / 12
    assert m["bias"] == pytest.approx(13 / 12)
    # sorted |errors| 2 2 3 3 3 4 | 6 6 6 7 8 11 -> (4 + 6) / 2
    assert m["median_abs_error"] == pytest.approx(5.0)
    # |error| <= 5: 2 2 3 3 3 4 -> 6 of 12
    assert m["cumulative_score_5"] == pytest.approx(0.5)
    assert m["threshold"] == 25.0


def test_flag_shares_match_hand_computation(frame: pd.DataFrame) -> None:
    m = evaluate_ages(frame)
    # real 13-17: preds 20, 27, 24 -> under 25: 20 and 24 -> 2 of 3
    assert m["under18_flagged_at_25"] == pytest.approx(2 / 3)
    # real 30+: preds 24, 35, 37, 50, 66 -> under 25: 24 -> 1 of 5
    assert m["over30_flagged_at_25"] == pytest.approx(1 / 5)

    lower = evaluate_ages(frame, threshold=21.0)
    # real 13-17 under 21: only 20 -> 1 of 3; real 30+ under 21: none
    assert lower["under18_flagged_at_25"] == pytest.approx(1 / 3)
    assert lower["over30_flagged_at_25"] == 0.0
    assert lower["threshold"] == 21.0

    # Catching 99 % of the three 13-17s needs all three (preds 20, 27, 24): a threshold just
    # above 27; real 30+ preds 24, 35, 37, 50, 66: only 24 is under it -> 1 of 5.
    assert m["threshold_catching_99pct_13_17"] == pytest.approx(27.0)
    assert m["threshold_catching_99pct_13_17"] > 27.0
    assert m["over30_flagged_at_that_threshold"] == pytest.approx(1 / 5)


def test_per_band_and_gender_match_hand_computation(frame: pd.DataFrame) -> None:
    by_band = evaluate_ages(frame)["by_band"]
    assert list(by_band) == ["0-12", "13-17", "18-24", "25-34", "35-49", "50-64", "65+"]
    expected = {
        "0-12": (2, 3.0, 0.0),  #     |3|,|-3| -> 6/2;       3-3 = 0
        "13-17": (3, 8.0, 8.0),  #    6+11+7 = 24 -> 24/3;    all positive
        "18-24": (2, 4.0, 4.0),  #    2+6 = 8 -> 8/2
        "25-34": (2, 4.0, -2.0),  #   6+2 = 8 -> 8/2;         -6+2 = -4 -> -4/2
        "35-49": (1, 3.0, -3.0),
        "50-64": (1, 8.0, -8.0),
        "65+": (1, 4.0, -4.0),
    }
    for label, (n, mae, bias) in expected.items():
        assert by_band[label]["n"] == n, label
        assert by_band[label]["mae"] == pytest.approx(mae), label
        assert by_band[label]["bias"] == pytest.approx(bias), label

    by_gender = evaluate_ages(frame)["by_gender"]
    # male rows 1-6: 3+3+6+11+7+2 = 32 -> 32/6; female rows 7-12: 6+6+2+3+8+4 = 29 -> 29/6
    assert by_gender["male"]["n"] == 6
    assert by_gender["male"]["mae"] == pytest.approx(32 / 6)
    assert by_gender["female"]["n"] == 6
    assert by_gender["female"]["mae"] == pytest.approx(29 / 6)


def test_empty_band_and_empty_flag_groups_are_null() -> None:
    # Only adults 25-34: every other band is empty, and there are no teenagers.
    m = evaluate_ages(pd.DataFrame({"real_age": [26, 28], "pred_age": [30.0, 20.0]}))
    # errors +4, -8: MAE (4 + 8) / 2 = 6; bias (4 - 8) / 2 = -2
    assert m["by_band"]["25-34"] == {"n": 2, "mae": 6.0, "bias": -2.0}
    for label in ("0-12", "13-17", "18-24", "35-49", "50-64", "65+"):
        assert m["by_band"][label] == {"n": 0, "mae": None, "bias": None}
    assert m["under18_flagged_at_25"] is None
    assert m["over30_flagged_at_25"] is None
    assert "by_gender" not in m and "by_race" not in m and "by_source" not in m


def test_threshold_is_strict_and_bands_use_whole_years() -> None:
    frame = pd.DataFrame({"real_age": [17.9, 12.9, 30.0], "pred_age": [25.0, 13.0, 24.99]})
    m = evaluate_ages(frame)
    assert m["under18_flagged_at_25"] == 0.0  # 25.0 is not *under* 25
    assert m["over30_flagged_at_25"] == 1.0
    assert m["by_band"]["0-12"]["n"] == 1 and m["by_band"]["13-17"]["n"] == 1
    assert list(age_band_labels(pd.Series([0, 12.99, 13, 64.5, 65, 116]))) == [
        "0-12", "0-12", "13-17", "50-64", "65+", "65+"
    ]
    assert len(BAND_LABELS) == len(AGE_BANDS)


def test_race_and_source_groups_and_json() -> None:
    frame = pd.DataFrame(
        {
            "real_age": [20, 30, 40, 50],
            "pred_age": [22, 27, 40, 60],  # errors +2, -3, 0, +10
            "race": pd.array([0, 0, 2, None], dtype="Int64"),  # one unknown race
            "source": ["a", "b", "b", "b"],
        }
    )
    m = evaluate_ages(frame)
    assert list(m["by_race"]) == ["White", "Black", "Asian", "Indian", "Others"]
    assert m["by_race"]["White"] == {"n": 2, "mae": 2.5, "bias": -0.5}  # (2+3)/2, (2-3)/2
    assert m["by_race"]["Asian"] == {"n": 1, "mae": 0.0, "bias": 0.0}
    assert m["by_race"]["Black"] == {"n": 0, "mae": None, "bias": None}
    assert m["by_source"]["a"]["mae"] == 2.0
    assert m["by_source"]["b"]["n"] == 3
    assert m["by_source"]["b"]["mae"] == pytest.approx(13 / 3)  # 3+0+10
    json.dumps(m, allow_nan=False)  # must serialise as strict JSON


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"real_age": [], "pred_age": []}), "empty"),
        (pd.DataFrame({"real_age": [20, 30], "pred_age": [21.0, float("nan")]}), "NaN"),
        (pd.DataFrame({"real_age": [20], "age": [21.0]}), "pred_age"),
    ],
)
def test_bad_input_raises(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate_ages(frame)


def test_format_report_lists_bands_and_rates(frame: pd.DataFrame) -> None:
    text = format_report(evaluate_ages(frame))
    assert "MAE=5.08" in text
    assert "66.7%" in text and "20.0%" in text
    assert "13-17" in text and "female" in text
    assert "65+" in text


def test_plot_evaluation_writes_png(frame: pd.DataFrame, tmp_path) -> None:
    out = plot_evaluation(frame, tmp_path / "plots" / "evaluation.png")
    assert out == tmp_path / "plots" / "evaluation.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as image:
        image.verify()
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.width >= 800 and image.height >= 300


def test_evaluate_cli_writes_predictions_and_names_the_teen_rate(tmp_path, tiny_model_path):
    """Through the group's --model: per-face predictions on request, the 13-17 rate under
    its own name (the old key kept as an alias), and a line before the slow part."""
    from click.testing import CliRunner

    from jobs.cli import cli
    from tests.faces_data import write_labelled_faces

    csv = write_labelled_faces(tmp_path / "faces", n=12)
    out = tmp_path / "pred.csv"
    result = CliRunner().invoke(cli, [
        "--model", str(tiny_model_path), "evaluate", "--labels", str(csv),
        "--images", str(csv.parent / "images"), "--json", "--predictions", str(out)])
    assert result.exit_code == 0, result.output
    assert "scoring 12 faces" in result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["model_version"] == "test-tiny"
    assert metrics["age_13_17_flagged"] == metrics["under18_flagged_at_25"]
    rows = pd.read_csv(out)
    labels = pd.read_csv(csv)
    assert sorted(rows["file_name"]) == sorted(labels["file_name"])
    assert {"real_age", "pred_age", "error"} <= set(rows.columns)
    assert (rows["error"] - (rows["pred_age"] - rows["real_age"])).abs().max() < 0.02
