"""The corrected group estimates on synthetic days whose true ages and model error are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.estimates import (
    CONFUSION,
    UNCORRECTED,
    EstimateOptions,
    error_model,
    estimate,
    estimate_frame,
    histograms,
)
from models.confusion import Confusion

LOWERS = (0, 18, 25, 35, 45, 55, 65)
LABELS = ["0-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
# Shoppers' true ages: a smooth mixture (young adults, families, retirees), 14 to 90.
CENTRES, SPREADS, WEIGHTS = [22, 38, 68], [4, 9, 8], [0.3, 0.5, 0.2]


def model_age(true: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A model like ours: 6.5-year noise, pulled a quarter of the way toward 33."""
    return np.clip(true + rng.normal(0, 6.5, len(true)) + 0.25 * (33 - true), 0, 100)


def card_with_confusion(rng: np.random.Generator, faces: int = 3000) -> dict:
    true = rng.uniform(14, 85, faces)
    return {"confusion": Confusion.from_ages(true, model_age(true, rng)).to_card(),
            "metrics": {"test_mae": 5.5}}


def day_cells(n: int, rng: np.random.Generator,
              buys: dict[str, np.ndarray] | None = None) -> tuple[pd.DataFrame, dict]:
    """One store's histogram rows for n shoppers; per category the probability of buying
    per group. Returns the rows and the true counts per group (None: all receipts)."""
    part = rng.choice(3, size=n, p=WEIGHTS)
    true = np.clip(rng.normal(np.take(CENTRES, part), np.take(SPREADS, part)), 14, 90)
    group = np.searchsorted(np.array(LOWERS), np.floor(true), side="right") - 1
    year = np.floor(model_age(true, rng)).astype(int)
    frames = [pd.DataFrame({"category": None, "year": year, "receipts": 1, "revenue": 1.0})]
    truth = {None: np.bincount(group, minlength=len(LOWERS))}
    for name, p in (buys or {}).items():
        bought = rng.random(n) < p[group]
        frames.append(pd.DataFrame({"category": name, "year": year[bought], "receipts": 1,
                                    "revenue": 2.0}))
        truth[name] = np.bincount(group[bought], minlength=len(LOWERS))
    frame = pd.concat(frames, ignore_index=True)
    cells = (frame.assign(c=frame["category"].fillna("")).groupby(["c", "year"])
             .agg(receipts=("receipts", "sum"), revenue=("revenue", "sum")).reset_index())
    cells["category"] = cells["c"].where(cells["c"] != "", None)
    return cells.drop(columns="c").assign(store_id=1, store_name="one"), truth


def test_recovers_a_known_mix_better_than_hard_groups():
    rng = np.random.default_rng(1)
    model = error_model(card_with_confusion(rng), LOWERS)
    assert model.kind == CONFUSION
    cells, truth = day_cells(20000, rng)
    est = estimate(histograms(cells), model, EstimateOptions(replicates=0))
    mix, true_mix = est.receipts[0] / est.receipts[0].sum(), truth[None] / 20000
    hard = np.bincount(np.searchsorted(np.array(LOWERS), cells["year"].repeat(
        cells["receipts"]).to_numpy(), side="right") - 1, minlength=7) / 20000
    tv_est = 0.5 * np.abs(mix - true_mix).sum()
    tv_hard = 0.5 * np.abs(hard - true_mix).sum()
    assert tv_hard > 0.12  # hard groups: biased toward the middle
    assert tv_est < 0.09
    assert tv_est < 0.6 * tv_hard


def test_intervals_cover_the_truth_and_hold_the_estimate():
    rng = np.random.default_rng(2)
    model = error_model(card_with_confusion(rng), LOWERS)
    buys = {"alcohol": np.array([0.0, 0.5, 0.4, 0.3, 0.2, 0.2, 0.1]),
            "news": np.array([0.05, 0.05, 0.1, 0.1, 0.2, 0.3, 0.5])}
    covered = []
    for _ in range(4):
        cells, truth = day_cells(3000, rng, buys)
        h = histograms(cells)
        est = estimate(h, model, EstimateOptions(replicates=60))
        for i, category in enumerate(est.units["category"]):
            key = None if pd.isna(category) else category
            covered.extend((est.low[i] <= truth[key]) & (truth[key] <= est.high[i]))
        assert (est.low <= est.receipts + 1e-9).all() and (est.receipts <= est.high + 1e-9).all()
        assert est.receipts.sum(1) == pytest.approx(h.hist.sum(1))
    assert np.mean(covered) >= 0.7  # the real-face bench measures 0.89-0.94 (README)


def test_revenue_is_shared_out_not_created():
    rng = np.random.default_rng(3)
    model = error_model(card_with_confusion(rng), LOWERS)
    cells, _ = day_cells(2000, rng, {"milk": np.full(7, 0.3)})
    h = histograms(cells)
    est = estimate(h, model, EstimateOptions(replicates=5))
    assert est.revenue.sum(1) == pytest.approx(h.revenue.sum(1))
    frame = estimate_frame(est, LABELS)
    assert list(frame.columns[-5:]) == ["age_group", "est_receipts", "est_receipts_low",
                                        "est_receipts_high", "est_revenue"]
    assert len(frame) == len(h.units) * 7


def test_without_a_confusion_the_estimate_falls_back_and_says_so():
    rng = np.random.default_rng(4)
    cells, _ = day_cells(5000, rng)
    # Without a measured confusion, the estimates are the observed counts, and say so.
    model = error_model({"metrics": {"val_mae": 6.0, "test_mae": 5.5}}, LOWERS)
    assert model.kind == UNCORRECTED
    est = estimate(histograms(cells), model, EstimateOptions(replicates=10))
    observed = np.bincount(np.searchsorted(np.array(LOWERS), cells["year"].repeat(
        cells["receipts"]).to_numpy(), side="right") - 1, minlength=7)
    assert est.receipts[0] == pytest.approx(observed)
    assert (est.low[0] <= observed).all() and (observed <= est.high[0]).all()
    assert est.high[0].sum() > est.low[0].sum()


def test_confusion_round_trips_through_the_card():
    rng = np.random.default_rng(5)
    true = rng.uniform(0, 90, 500)
    est = model_age(true, rng)
    est[:7] = np.nan
    confusion = Confusion.from_ages(true, est, "test")
    back = Confusion.from_card({"confusion": confusion.to_card()})
    assert back is not None and back.faces == 500 and back.unaged.sum() == 7
    assert (back.counts == confusion.counts).all()
    assert Confusion.from_card({}) is None
