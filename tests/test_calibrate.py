"""P(age < challenge age) from the model's distribution: the sums, the temperature fit, the
calibration error, the operating point, and `ageseg evaluate` reporting them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from jobs.cli import cli
from models.calibrate import (
    calibrate_card,
    calibration_error,
    choose_operating_point,
    fit_temperature,
    flag_rates,
    p_under,
    with_temperature,
)
from tests.faces_data import write_labelled_faces

K = 101


def _gaussians(centres: np.ndarray, sigma: float) -> np.ndarray:
    grid = np.arange(K)[None, :]
    p = np.exp(-0.5 * ((grid - centres[:, None]) / sigma) ** 2)
    return p / p.sum(axis=1, keepdims=True)


def test_p_under_sums_whole_year_bins():
    one = np.zeros((1, K))
    one[0, 20] = 1.0  # certainly 20 (somewhere in [20, 21))
    assert p_under(one, 25)[0] == 1.0
    assert p_under(one, 20)[0] == 0.0
    assert p_under(one, 20.5)[0] == pytest.approx(0.5)
    spread = np.full((1, K), 1 / K)
    assert p_under(spread, 25)[0] == pytest.approx(25 / K)


def test_temperature_widens_an_overconfident_distribution():
    rng = np.random.default_rng(0)
    estimates = rng.uniform(10, 70, 4000)
    truth = estimates + rng.normal(0, 6, len(estimates))  # the real error: 6 years
    narrow = _gaussians(estimates, 2.5)  # what the model says: 2.5 years
    temperature, nll, nll_raw = fit_temperature(narrow, truth)
    assert 3 < temperature < 9 and nll < nll_raw
    wide = with_temperature(narrow, temperature)
    np.testing.assert_allclose(wide.sum(axis=1), 1.0)
    under = truth < 25
    before = calibration_error(p_under(narrow, 25), under)
    after = calibration_error(p_under(wide, 25), under)
    assert after < 0.03 < before
    np.testing.assert_allclose(with_temperature(narrow, 1.0), narrow, atol=1e-9)


def test_calibration_error_of_known_cases():
    assert calibration_error(np.full(10, 1.0), np.array([1, 0] * 5)) == pytest.approx(0.5)
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 20000)
    assert calibration_error(p, rng.uniform(0, 1, len(p)) < p) < 0.02


def test_operating_point_catches_most_teens_within_the_adult_budget():
    ages = np.array([14.0] * 10 + [35.0] * 20)
    # teens' P(under 25) spread 0.05..0.95; adults' 0.01..0.20
    p = np.concatenate([np.linspace(0.05, 0.95, 10), np.linspace(0.01, 0.20, 20)])
    point = choose_operating_point(p, ages, max_adult_rate=0.10)
    rates = flag_rates(p, ages, point)
    assert rates["30_plus"] <= 0.10
    # the teen at 0.15 would need a cut at 0.15, which flags 6 of 20 adults; of the cuts
    # that catch the 8 teens from 0.25 up, the highest (fewest adults) is chosen
    assert rates["13_17"] == 0.8 and point == 0.25
    card = calibrate_card(_gaussians(ages, 3.0), ages)
    assert card["flag_probability"] > 0 and card["calibration_error"] >= 0


def test_evaluate_reports_the_operating_point_and_plots(tmp_path):
    """A model whose card has a calibration gets its probability figures in --json and a
    reliability diagram; the group's `--flag-probability` overrides the card's point."""
    from models.build import build_model
    from models.persist import save_model

    _, age_model = build_model(32)
    model = save_model(age_model, tmp_path / "m.ageseg", {
        "version": "cal", "metrics": {"val_mae": 9.0},
        "calibration": {"temperature": 2.0, "flag_probability": 0.3}})
    labels = write_labelled_faces(tmp_path / "faces", n=24, size=32)
    png = tmp_path / "calibration.png"
    args = ["--model", str(model), "evaluate", "--labels", str(labels),
            "--images", str(tmp_path / "faces" / "images"), "--json",
            "--calibration-plot", str(png)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output.strip().splitlines()[-1])
    assert metrics["flag_probability"] == 0.3
    for key in ("flagged_13_17", "flagged_30_plus", "calibration_error"):
        assert key in metrics
    assert 0 <= metrics["calibration_error"] <= 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = CliRunner().invoke(cli, ["--flag-probability", "0.9", *args[:-2]])
    assert json.loads(again.output.strip().splitlines()[-1])["flag_probability"] == 0.9
