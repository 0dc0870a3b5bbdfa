"""tf.data pipelines over labelled face files: decode, resize, augment, batch.

Decoding runs in TensorFlow's thread pool and overlaps with training, so the 2-core
machines spend their time in the model, not in JPEG decoding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from models.camera import degrade_face, random_camera

AUTOTUNE = tf.data.AUTOTUNE


def _load(path: tf.Tensor, image_size: int) -> tf.Tensor:
    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size), antialias=True)
    return tf.clip_by_value(image, 0.0, 255.0)


# Framing jitter a face detector produces around the same face (issue 11's measurements:
# detector boxes vary by about +-15 % in size and +-10 % in position from photo to photo).
JITTER_SCALE = 0.15
JITTER_SHIFT = 0.10
JITTER_DEGREES = 10.0
CONTEXT = 1.6  # the canvas around a face file, as a multiple of its side


def _background(side: int) -> tf.Tensor:
    """What surrounds a face in a checkout photo, roughly: a random colour gradient with
    noise. Face files hold no context, so a crop that is wider than the file (zoomed out by
    the jitter, or shifted) sees this, as a scene crop sees the shop behind the shopper."""
    c0 = tf.random.uniform([1, 1, 3], 0.0, 255.0)
    c1 = tf.random.uniform([1, 1, 3], 0.0, 255.0)
    ramp = tf.linspace(0.0, 1.0, side)
    horizontal = tf.random.uniform([]) < 0.5
    ramp = tf.cond(horizontal, lambda: ramp[None, :, None], lambda: ramp[:, None, None])
    image = c0 + (c1 - c0) * ramp * tf.ones([side, side, 1])
    noise = tf.random.normal([side, side, 3], stddev=tf.random.uniform([], 0.0, 10.0))
    return image + noise


def _feather_mask(size: int) -> tf.Tensor:
    """1 inside the face file, falling to 0 at its border (an oval-ish soft paste)."""
    u = tf.linspace(-1.0, 1.0, size)
    r = tf.sqrt(tf.square(u)[None, :] + tf.square(u)[:, None])
    return tf.clip_by_value((1.1 - r) / 0.3, 0.0, 1.0)[:, :, None]


def _reframe(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Place the face file on a background canvas and cut the model's square out of it with
    a random scale, shift and small rotation: the crop contract's framing plus the error a
    detector makes around it (models/crop.py)."""
    canvas_side = int(round(image_size * CONTEXT))
    offset = (canvas_side - image_size) // 2
    face = tf.image.pad_to_bounding_box(image, offset, offset, canvas_side, canvas_side)
    inside = tf.image.pad_to_bounding_box(
        tf.ones([image_size, image_size, 1]), offset, offset, canvas_side, canvas_side
    )
    soft = tf.image.pad_to_bounding_box(
        _feather_mask(image_size), offset, offset, canvas_side, canvas_side
    )
    mask = tf.cond(tf.random.uniform([]) < 2 / 3, lambda: inside, lambda: soft)
    canvas = face * mask + _background(canvas_side) * (1.0 - mask)

    scale = tf.random.uniform([], 1.0 - JITTER_SCALE, 1.0 + JITTER_SCALE)
    shift = tf.random.uniform([2], -JITTER_SHIFT, JITTER_SHIFT) * image_size
    angle = tf.random.uniform([], -JITTER_DEGREES, JITTER_DEGREES) * (3.14159265 / 180.0)
    cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
    out_centre = (image_size - 1) / 2.0
    in_x = (canvas_side - 1) / 2.0 + shift[0]
    in_y = (canvas_side - 1) / 2.0 + shift[1]
    # Output pixel (x, y) samples the canvas at centre + scale * rotate(x - c, y - c).
    transform = tf.stack([
        cos, -sin, in_x - cos * out_centre + sin * out_centre,
        sin, cos, in_y - sin * out_centre - cos * out_centre,
        0.0, 0.0,
    ])
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=canvas[None], transforms=transform[None],
        output_shape=tf.constant([image_size, image_size]), fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT",
    )
    return out[0]


def _mild_crop(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Scale +-10 % and a small shift inside the face file, edges reflected."""
    pad = max(2, image_size // 10)
    image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    scale = tf.random.uniform([], 0.9, 1.1)
    side = tf.cast(tf.cast(image_size + 2 * pad, tf.float32) * scale, tf.int32)
    image = tf.image.resize(image, (side, side))
    return tf.image.random_crop(image, (image_size, image_size, 3))


def _soften(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """A fifth of the time, lose detail as a small or out-of-focus face in a photo does:
    down to 40-100 % of the side and back up."""
    side = tf.cast(tf.cast(image_size, tf.float32) * tf.random.uniform([], 0.4, 1.0), tf.int32)
    blurred = tf.image.resize(tf.image.resize(image, (side, side), antialias=True),
                              (image_size, image_size))
    return tf.cond(tf.random.uniform([]) < 0.2, lambda: blurred, lambda: image)


def camera_augment(image: tf.Tensor, prob: float) -> tf.Tensor:
    """With probability `prob`, the face as a cheap checkout camera would take it: a random
    mix of the conditions of models/camera.py (exposure, contrast, colour cast, focus and
    motion blur, sensor noise, JPEG, a small face, head roll), strengths drawn from its
    `RANGES`, the bench's span. Else the face unchanged.

    The degradation is numpy and Pillow code (JPEG in memory), so it runs through
    `tf.numpy_function`; its randomness comes from a TensorFlow draw, so a seeded pipeline
    degrades the same faces the same way.
    """
    if prob <= 0:
        return image
    seed = tf.random.uniform([], 0, 2**31 - 1, dtype=tf.int64)
    out = tf.numpy_function(_degrade, [image, seed, np.float32(prob)], tf.float32,
                            stateful=False)
    out.set_shape(image.shape)
    return out


def _degrade(image: np.ndarray, seed: np.int64, prob: np.float32) -> np.ndarray:
    rng = np.random.default_rng(int(seed))
    if rng.random() >= prob:
        return image.astype(np.float32)
    camera = random_camera(rng)
    for _ in range(8):  # "degraded" means at least one condition on
        if not camera.clean:
            break
        camera = random_camera(rng)
    face = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return degrade_face(face, camera, rng).astype(np.float32)


def _augment(image: tf.Tensor, image_size: int, camera_prob: float = 0.0) -> tf.Tensor:
    """Label-preserving changes a checkout camera produces: framing around the face and the
    background beside it, mirror, light, colour, blur; with `camera_prob`, a degraded camera
    (`camera_augment`)."""
    image = tf.image.random_flip_left_right(image)
    # Half the faces as a detector frames them in a photo, half as the face files frame
    # them (with the mild crop jitter of before): the model must stay as good on crops.
    image = tf.cond(tf.random.uniform([]) < 0.5, lambda: _reframe(image, image_size),
                    lambda: _mild_crop(image, image_size))
    image = _soften(image, image_size)
    image = camera_augment(image, camera_prob)
    image = tf.image.random_brightness(image, 25.0)
    image = tf.image.random_contrast(image, 0.75, 1.25)
    image = tf.image.random_saturation(image, 0.7, 1.3)
    gray = tf.random.uniform([]) < 0.1
    image = tf.cond(gray, lambda: tf.repeat(tf.image.rgb_to_grayscale(image), 3, -1), lambda: image)
    return tf.clip_by_value(image, 0.0, 255.0)


def face_dataset(
    paths: list[str],
    ages: Any,
    image_size: int,
    batch_size: int,
    *,
    training: bool = False,
    seed: int = 0,
    camera_prob: float = 0.0,
) -> tf.data.Dataset:
    """Batches of (image, age) — or images alone when ``ages`` is None. ``ages`` may also be
    any per-face targets: an (N, k) array, or a dict of them for a model with several
    outputs (models/recipe.py: `training_targets`).

    Decoded images are cached in memory at model size (17.5k faces at 64 px is ~0.2 GB), so
    only the first epoch decodes JPEGs. Training batches are shuffled and augmented and the
    dataset repeats; evaluation batches keep file order. `camera_prob` is the share of
    training faces degraded as a checkout camera degrades them (`camera_augment`).
    """
    if not 0.0 <= camera_prob <= 1.0:
        raise ValueError(f"camera_prob must be in [0, 1], got {camera_prob}")
    if ages is not None and not isinstance(ages, dict):
        ages = np.asarray(ages, dtype=np.float32)
    ds = tf.data.Dataset.from_tensor_slices(
        (list(paths), ages) if ages is not None else list(paths)
    )

    def load(path, *rest):
        image = tf.cast(_load(path, image_size), tf.uint8)
        return (image, *rest) if rest else image

    ds = ds.map(load, num_parallel_calls=AUTOTUNE).cache()
    if training:
        ds = ds.shuffle(min(len(paths), 20000), seed=seed, reshuffle_each_iteration=True).repeat()
        ds = ds.map(
            lambda img, age: (_augment(tf.cast(img, tf.float32), image_size, camera_prob), age),
            num_parallel_calls=AUTOTUNE,
        )
    else:
        ds = ds.map(
            (lambda img, age: (tf.cast(img, tf.float32), age))
            if ages is not None
            else (lambda img: tf.cast(img, tf.float32)),
            num_parallel_calls=AUTOTUNE,
        )
    return ds.batch(batch_size, drop_remainder=training).prefetch(AUTOTUNE)
