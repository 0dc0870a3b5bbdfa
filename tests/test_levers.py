"""Issue 19's levers on small data: rare-age weights, the P(under) head, BatchNorm
re-estimation (progressive resizing, weight averaging) and their path through training."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.faces_data import write_labelled_faces

SIZE = 32


def test_lds_weights_lift_rare_ages_and_average_one():
    from models.imbalance import lds_weights

    ages = np.concatenate([np.full(500, 30.0), np.full(20, 15.0), np.full(5, 90.0)])
    w = lds_weights(ages)
    assert w.mean() == pytest.approx(1.0, abs=1e-5)
    assert w[ages == 15].mean() > 3 * w[ages == 30].mean()
    assert w[ages == 90].mean() >= w[ages == 15].mean()
    assert w.max() <= 5.0 + 1e-3  # capped at 5x the mean (then renormalised)
    # Neighbouring ages share density: a lone 31 among many 30s is not treated as rare.
    assert lds_weights(np.append(np.full(500, 30.0), 31.0))[-1] < 1.5


def test_band_weights_multiply_the_band_and_keep_the_mean():
    from models.imbalance import band_weights

    ages = np.array([10.0, 15.0, 20.0, 30.0, 40.0, 50.0])
    w = band_weights(ages, {(13.0, 31.0): 3.0})
    assert w.mean() == pytest.approx(1.0)
    assert w[1] == pytest.approx(3 * w[0]) and w[3] == pytest.approx(3 * w[5])
    with pytest.raises(ValueError):
        band_weights(ages, {(0.0, 10.0): 0.0})


def test_logit_temperature_recovers_an_overconfident_head():
    """Outcomes drawn from sigmoid(z); a head that says sigmoid(2.5 z) is overconfident by a
    temperature of 2.5, and the fit finds it."""
    from models.calibrate import (
        calibration_error,
        fit_logit_temperature,
        with_logit_temperature,
    )

    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 20000)
    outcome = rng.uniform(size=z.size) < 1 / (1 + np.exp(-z))
    head = 1 / (1 + np.exp(-2.5 * z))
    t = fit_logit_temperature(head, outcome)
    assert t == pytest.approx(2.5, rel=0.06)
    assert calibration_error(with_logit_temperature(head, t), outcome) < 0.5 * \
        calibration_error(head, outcome)


def test_calibrate_card_reads_p_under_from_the_head_that_separates_better():
    from models.calibrate import calibrate_card

    rng = np.random.default_rng(1)
    ages = np.concatenate([rng.uniform(13, 18, 200), rng.uniform(18, 30, 300),
                           rng.uniform(30, 70, 500)])
    # A vague age distribution (everyone spread over 10-60) against a sharp, right head.
    probs = np.full((len(ages), 101), 1e-6)
    probs[:, 10:60] = 1.0
    probs /= probs.sum(axis=1, keepdims=True)
    sharp = np.where(ages < 25, 0.9, 0.05)
    card = calibrate_card(probs, ages, under_head=sharp)
    assert card["source"] == "under_head"
    assert card["flag_rates_at_operating_point"]["13_17"] == 1.0
    assert card["flag_rates_at_operating_point"]["30_plus"] == 0.0
    assert card["distribution"]["flag_rates_at_operating_point"]["13_17"] < 1.0
    # Without a head the card is as before: the distribution.
    assert calibrate_card(probs, ages)["source"] == "distribution"


def test_two_head_model_trains_both_outputs_and_round_trips(tmp_path):
    """A step on weighted targets lowers both losses; the saved file keeps the head, and
    AgeModel.p_under reads it only where the card chose it, for its age."""
    import keras

    from models.build import UNDER_HEAD, build_model
    from models.persist import load_model, save_model
    from models.recipe import TrainConfig, compile_model, training_targets

    config = TrainConfig(image_size=SIZE, under_age=25.0, sample_weights="under25")
    train_model, age_model = build_model(SIZE, under_age=25.0)
    compile_model(train_model, config, 1e-3, "dex")
    rng = np.random.default_rng(2)
    ages = pd.Series(rng.uniform(5, 70, 16).astype("float32"))
    x = np.stack([np.full((SIZE, SIZE, 3), a * 3, np.float32) for a in ages])
    y = training_targets(ages, config)
    assert set(y) == {"age_probs", UNDER_HEAD} and y[UNDER_HEAD].shape == (16, 2)
    np.testing.assert_array_equal(y[UNDER_HEAD][:, 0], ages < 25)
    keras.utils.set_random_seed(0)
    first = train_model.train_on_batch(x, y, return_dict=True)
    for _ in range(15):
        last = train_model.train_on_batch(x, y, return_dict=True)
    assert last["p_under_loss"] < first["p_under_loss"]
    assert last["age_probs_loss"] < first["age_probs_loss"]

    card = {"version": "h1", "calibration": {"source": "under_head", "temperature": 1.0,
                                             "under_head": {"age": 25.0, "temperature": 0.25}}}
    # float16 kernels: this checks the calibration, which multiplies the storage's rounding
    # by 4 on the logit (int8 storage: tests/test_litert.py, bench/litert_parity.py)
    model = load_model(save_model(age_model, tmp_path / "h.ageseg", card, weights="float16"))
    assert model.under_head_age == 25.0
    faces = x.astype(np.uint8)
    age, probs, head = model.predict_all(faces, batch_size=8)
    # the loaded network's own raw P(under 25) on the very pixels predict_all saw (uint8,
    # not the fractional training x; the faces are uniform, so the mirror average changes
    # nothing): the storage's rounding is then the same on both sides
    raw = np.asarray(model.keras_model(faces.astype(np.float32), training=False)[1])[:, 0]
    logit = np.log(raw) - np.log1p(-raw)
    calibrated = 1 / (1 + np.exp(-logit / 0.25))
    np.testing.assert_allclose(head, calibrated, atol=0.005)
    assert np.abs(calibrated - raw).max() > 0.05
    np.testing.assert_allclose(model.p_under(probs, head, 25.0), head, rtol=1e-6)
    from models.calibrate import p_under

    np.testing.assert_allclose(model.p_under(probs, head, 21.0), p_under(probs, 21.0))
    # A card that chose the distribution keeps it even at the head's age.
    card["calibration"]["source"] = "distribution"
    other = load_model(save_model(age_model, tmp_path / "d.ageseg", card))
    np.testing.assert_allclose(other.p_under(probs, head, 25.0), p_under(probs, 25.0))


def test_batchnorm_reestimation_matches_the_batch_it_measured():
    """After re-estimation on one batch, inference (moving statistics) equals a
    training-mode pass (batch statistics) on that batch: the statistics are the batch's,
    whatever size or weights they were gathered for before."""
    from models.build import build_model, reestimate_batchnorm

    _, model = build_model(48)
    x = np.random.default_rng(3).uniform(0, 255, (8, 48, 48, 3)).astype("float32")
    before = np.asarray(model(x, training=False))
    reestimate_batchnorm(model, [x])
    after = np.asarray(model(x, training=False))
    trained = np.asarray(model(x, training=True))
    assert np.abs(after - trained).max() < 0.05 * max(1.0, np.abs(trained).max())
    assert np.abs(before - trained).max() > np.abs(after - trained).max()


@pytest.mark.slow
def test_train_with_every_lever_writes_a_card_that_scoring_follows(tmp_path):
    """`ageseg train --sample-weights lds --under-head 25 --ema 0.9` end to end on generated
    faces: the moving average is shipped (early stopping off), the card names the levers
    and the source of P(under 25), and the saved model scores with its head."""
    import os

    from models.persist import load_model

    csv = write_labelled_faces(tmp_path / "faces", n=40)
    out = tmp_path / "m.ageseg"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "jobs", "train", "--labels", str(csv),
           "--images", str(csv.parent / "images"), "--out", str(out),
           "--checkpoint-dir", str(tmp_path / "ckpt"), "--image-size", str(SIZE),
           "--batch-size", "8", "--epochs", "2", "--steps-per-epoch", "3", "--lr", "0.003",
           "--sample-weights", "lds", "--under-head", "25", "--ema", "0.9"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "moving average" in done.stderr
    model = load_model(out)
    levers = model.card["recipe"]["levers"]
    assert levers["sample_weights"].startswith("label-distribution smoothing")
    assert levers["under_head"]["age"] == 25.0 and "EMA" in levers["weight_average"]
    calibration = model.card["calibration"]
    assert calibration["source"] in ("under_head", "distribution")
    assert calibration["under_head"]["temperature"] > 0
    assert "val_mae_raw_last_epoch" in model.card["metrics"]
    history = pd.read_csv(tmp_path / "ckpt" / "history.csv")
    assert list(history["epoch"]) == [0, 1] and history["val_mae"].notna().all()
    faces = np.random.default_rng(5).integers(0, 255, (3, SIZE, SIZE, 3), dtype=np.uint8)
    ages, probs, head = model.predict_all(faces)
    assert probs.shape == (3, 101) and head.shape == (3,) and ((head >= 0) & (head <= 1)).all()
    # `train` exports by default (the resume tests of test_models.py skip it). The export
    # checks its graph against Keras and refuses one off by too much, which a 2-epoch net at
    # lr 0.003 may be: the model is then kept, scored on Keras, and the warning says so.
    from models.litert import has_graph, load_litert

    assert "adding the LiteRT graph" in done.stderr
    if has_graph(out):
        lite_ages, _, lite_head = load_litert(out).predict_all(faces)
        np.testing.assert_allclose(lite_ages, ages, atol=1.0)
        np.testing.assert_allclose(lite_head, head, atol=0.05)
    else:
        assert "the model file has no LiteRT graph" in done.stderr, done.stderr[-2000:]
