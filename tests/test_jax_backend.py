"""The shipped model on Keras' JAX backend (the optional `jax` extra): the .ageseg file loads
and gives the same ages and P(under 25) as on TensorFlow, on the same faces. The backend is
fixed when Keras is imported, so the JAX side runs in its own process."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

JAX_SIDE = """
import json, sys
import numpy as np
import keras
from models.calibrate import p_under
from models.persist import load_model
assert keras.backend.backend() == "jax", keras.backend.backend()
model = load_model(None, precision="float32")
ages, probs, head = model.predict_all(np.load(sys.argv[1]), batch_size=8)
print(json.dumps({"ages": ages.tolist(), "p_under": model.p_under(probs, head, 25.0).tolist(),
                  "p_under_distribution": p_under(probs, 25.0).tolist(),
                  "device": model.device}))
"""


def _faces(size: int) -> np.ndarray:
    """The demo's public-domain faces at the model's size, plain, mirrored, darker and
    shifted: eight different crops."""
    from demo.scenes import available_demo_faces

    crops = []
    for image, _, _ in available_demo_faces():
        face = np.asarray(Image.fromarray(image).resize((size, size)))
        crops += [face, face[:, ::-1], (face * 0.6).astype(np.uint8), np.roll(face, 4, 0)]
    while len(crops) < 8:
        crops.append(np.clip(crops[len(crops) % 4].astype(int) + 30, 0, 255).astype(np.uint8))
    return np.stack(crops[:8])


@pytest.mark.slow
def test_jax_backend_gives_the_tensorflow_ages(tmp_path):
    if importlib.util.find_spec("jax") is None:
        if os.environ.get("CI") or os.environ.get("AGESEG_REQUIRE_PG") == "1":
            pytest.fail("the `jax` extra is required in CI (make test installs it)")
        pytest.skip("the `jax` extra is not installed")
    from models.calibrate import p_under
    from models.persist import load_model

    model = load_model(None, precision="float32")
    faces = _faces(model.image_size)
    np.save(tmp_path / "faces.npy", faces)
    ages, probs, head = model.predict_all(faces, batch_size=8)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT),
           "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", JAX_SIDE, str(tmp_path / "faces.npy")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    jax_side = json.loads(out.stdout.strip().splitlines()[-1])
    assert jax_side["device"] == "CPU"
    np.testing.assert_allclose(jax_side["ages"], ages, atol=0.05)
    # P(under 25) as compliance reads it (the shipped model's own head) and from the
    # age distribution
    np.testing.assert_allclose(jax_side["p_under"], model.p_under(probs, head, 25.0),
                               atol=0.005)
    np.testing.assert_allclose(jax_side["p_under_distribution"], p_under(probs, 25.0),
                               atol=0.005)
    assert np.ptp(ages) > 1.0  # different faces, different ages: not a constant output
