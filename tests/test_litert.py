"""The age model on LiteRT (models/litert.py, issue 32): the exported graph loads and gives
Keras's predictions, the card's prediction steps (models/prediction.py) are the same for
both runtimes, int8 weights load as the float16 ones did, and the LiteRT path never imports
TensorFlow. A small untrained model exported on the fly; generated faces only."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.blocked import BLOCK_TF

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32


def _faces(n: int = 12, seed: int = 3) -> np.ndarray:
    from models.litert import generated_faces

    return generated_faces(SIZE, n, seed=seed)


@pytest.mark.slow
def test_exported_graph_loads_and_matches_keras(litert_model_path):
    from models.litert import MEMBER, load_litert
    from models.persist import load_model, read_card, read_member

    card = read_card(litert_model_path)
    assert card["litert"]["member"] == MEMBER and read_member(litert_model_path, MEMBER)
    assert card["litert"]["parity"]["mean_abs_age_diff"] <= 0.05
    assert card["weights"]["storage"].startswith("kernels int8")
    assert card["weights"]["parity"]["mean_abs_age_diff"] <= 0.05  # vs the float16 file
    keras_model, lite = load_model(litert_model_path, precision="float32"), \
        load_litert(litert_model_path)
    assert lite.mirror and lite.under_head_age == 25.0 and lite.has_distribution
    faces = _faces(13)  # 13 faces, batches of 4: three full, one padded
    k_ages, k_probs, k_head = keras_model.predict_all(faces, batch_size=4)
    l_ages, l_probs, l_head = lite.predict_all(faces, batch_size=4)
    assert l_ages.shape == (13,) and l_probs.shape == (13, 101) and l_head.shape == (13,)
    np.testing.assert_allclose(l_ages, k_ages, atol=0.05)
    np.testing.assert_allclose(l_probs, k_probs, atol=1e-3)
    np.testing.assert_allclose(l_head, k_head, atol=5e-3)
    np.testing.assert_allclose(lite.p_under(l_probs, l_head, 25.0),
                               keras_model.p_under(k_probs, k_head, 25.0), atol=5e-3)


@pytest.mark.slow
def test_litert_applies_the_cards_prediction(litert_model_path):
    """The mirror average (a face and its mirror image get one age) and both calibrations,
    checked against the raw network output of the graph itself."""
    from models.litert import load_litert
    from models.prediction import PredictionSpec, finish

    lite = load_litert(litert_model_path)
    faces = _faces(6, seed=5)
    ages, probs, head = lite.predict_all(faces, batch_size=6)
    np.testing.assert_allclose(lite.predict_faces(faces[:, :, ::-1].copy(), batch_size=6),
                               ages, atol=1e-4)
    x = faces.astype(np.float32)
    raw = lite._raw(np.concatenate([x, x[:, :, ::-1]]))
    plain = finish(*raw, PredictionSpec(SIZE, mirror=True, temperature=1.0,
                                        under_temperature=1.0))
    np.testing.assert_allclose(plain[0], ages, atol=1e-5)  # ages are the uncalibrated mean
    sharper = probs.max(axis=1) > plain[1].max(axis=1)  # T = 0.9 < 1 sharpens
    assert sharper.all()
    logit = np.log(plain[2] / (1 - plain[2])) / 0.8
    np.testing.assert_allclose(head, 1 / (1 + np.exp(-logit)), atol=1e-5)


@pytest.mark.slow
def test_one_interpreter_per_thread_gives_the_same_ages(litert_model_path):
    from models.litert import load_litert

    lite = load_litert(litert_model_path, threads=1)
    faces = _faces(8, seed=9)
    expected = lite.predict_faces(faces, batch_size=4)
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(
        lite.predict_faces(faces, batch_size=4))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3
    for ages in results:
        np.testing.assert_allclose(ages, expected, atol=1e-6)


def test_a_file_without_a_graph_says_how_to_export(tiny_model_path):
    from models.litert import NoLiteRTGraph, has_graph, load_litert

    assert not has_graph(tiny_model_path)
    with pytest.raises(NoLiteRTGraph, match="ageseg export"):
        load_litert(tiny_model_path)


def test_int8_weights_round_trip_and_float16_files_still_load():
    from models.persist import decode_weights, encode_weights, quantize_int8

    rng = np.random.default_rng(0)
    kernel = rng.normal(0, 0.05, (3, 3, 16, 128)).astype(np.float32)
    kernel[..., 7] = 0.0  # a dead channel: scale 1, values 0
    small = rng.normal(0, 1, (64,)).astype(np.float32)
    q, scale = quantize_int8(kernel)
    assert q.dtype == np.int8 and scale.shape == (128,) and np.abs(q).max() == 127
    for storage, tolerance in (("int8", None), ("float16", 1e-3)):
        arrays = encode_weights([kernel, small], storage)
        assert set(arrays) == ({"q0000", "s0000", "w0001"} if storage == "int8"
                               else {"w0000", "w0001"})
        npz = _npz(arrays)
        restored = decode_weights(npz)
        np.testing.assert_array_equal(restored[1], small)  # small tensors stay float32
        if tolerance is None:  # within half a quantization step of each channel
            assert (np.abs(restored[0] - kernel) <= scale / 2 + 1e-7).all()
        else:
            np.testing.assert_allclose(restored[0], kernel, atol=tolerance)


def _npz(arrays: dict) -> object:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    return np.load(buffer)



@pytest.mark.slow
def test_the_litert_runtime_never_imports_tensorflow(litert_model_path):
    code = BLOCK_TF + f"""
import numpy as np
from models.litert import load_litert, generated_faces
model = load_litert({str(litert_model_path)!r}, threads=1)
ages = model.predict_faces(generated_faces({SIZE}, 5), batch_size=4)
assert ages.shape == (5,) and np.isfinite(ages).all()
assert not any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")
