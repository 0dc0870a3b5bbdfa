"""--precision: what "auto" picks where, the CPU flag check, and a bf16 backbone."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import SIZE


def test_auto_precision_follows_the_device_and_the_measured_decision():
    from models.persist import auto_precision

    assert auto_precision(gpu=True, bf16_cpu=True) == "float16"
    assert auto_precision(gpu=False, bf16_cpu=False) == "float32"
    assert auto_precision(gpu=False, bf16_cpu=True, cpu_bf16_by_default=True) == "bf16"
    assert auto_precision(gpu=False, bf16_cpu=True, cpu_bf16_by_default=False) == "float32"


def test_cpu_bf16_flags_are_read_from_cpuinfo(tmp_path):
    from models.persist import cpu_has_bf16

    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n")
    plain = tmp_path / "plain"
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    assert cpu_has_bf16(amx) and not cpu_has_bf16(plain)
    assert not cpu_has_bf16(tmp_path / "absent")


def test_bf16_runs_the_backbone_in_bfloat16_with_float32_weights_and_head(tiny_model_path):
    from models.persist import load_model

    plain = load_model(tiny_model_path, precision="float32")
    bf16 = load_model(tiny_model_path, precision="bf16")
    assert (plain.precision, bf16.precision) == ("float32", "bf16")
    backbone = bf16.keras_model.get_layer("resnet50")
    assert {layer.compute_dtype for layer in backbone.layers[1:]} == {"bfloat16"}
    assert {w.dtype for w in backbone.weights} == {"float32"}
    assert bf16.keras_model.get_layer("age_logits").compute_dtype == "float32"
    faces = np.random.default_rng(4).integers(0, 255, (4, SIZE, SIZE, 3), dtype=np.uint8)
    ages = bf16.predict_faces(faces, batch_size=4)
    assert ages.dtype == np.float32
    np.testing.assert_allclose(ages, plain.predict_faces(faces, batch_size=4), atol=1.0)


def test_unknown_precision_is_refused(tiny_model_path):
    from models.persist import load_model

    with pytest.raises(ValueError, match="precision"):
        load_model(tiny_model_path, precision="int8")


def test_a_model_with_an_extra_output_still_predicts():
    """A second head (say P(age < 25)) beside the age: the ages come from the "age" output."""
    import keras

    from models.build import build_model
    from models.persist import AgeModel

    _, age_model = build_model(SIZE)
    extra = keras.layers.Dense(1, activation="sigmoid", name="p_under_25")(
        age_model.get_layer("age_logits").output)
    two = keras.Model(age_model.inputs, [extra, age_model.output])
    faces = np.random.default_rng(5).integers(0, 255, (3, SIZE, SIZE, 3), dtype=np.uint8)
    np.testing.assert_allclose(AgeModel(two).predict_faces(faces, batch_size=4),
                               AgeModel(age_model).predict_faces(faces, batch_size=4),
                               atol=1e-5)
