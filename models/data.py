"""tf.data pipelines over labelled face files: decode, resize, augment, batch.

Decoding runs in TensorFlow's thread pool and overlaps with training, so the 2-core
machines spend their time in the model, not in JPEG decoding.
"""

from __future__ import annotations

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def _load(path: tf.Tensor, image_size: int) -> tf.Tensor:
    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size), antialias=True)
    return tf.clip_by_value(image, 0.0, 255.0)


def _augment(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Label-preserving changes a checkout camera produces: framing, mirror, light, colour."""
    image = tf.image.random_flip_left_right(image)
    pad = max(2, image_size // 10)
    image = tf.image.resize_with_crop_or_pad(image, image_size + 2 * pad, image_size + 2 * pad)
    scale = tf.random.uniform([], 0.9, 1.1)
    side = tf.cast(tf.cast(image_size + 2 * pad, tf.float32) * scale, tf.int32)
    image = tf.image.resize(image, (side, side))
    image = tf.image.random_crop(image, (image_size, image_size, 3))
    image = tf.image.random_brightness(image, 25.0)
    image = tf.image.random_contrast(image, 0.75, 1.25)
    image = tf.image.random_saturation(image, 0.7, 1.3)
    gray = tf.random.uniform([]) < 0.1
    image = tf.cond(gray, lambda: tf.repeat(tf.image.rgb_to_grayscale(image), 3, -1), lambda: image)
    return tf.clip_by_value(image, 0.0, 255.0)


def face_dataset(
    paths: list[str],
    ages: list[float] | None,
    image_size: int,
    batch_size: int,
    *,
    training: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of (image, age) — or images alone when ``ages`` is None.

    Decoded images are cached in memory at model size (17.5k faces at 64 px is ~0.2 GB), so
    only the first epoch decodes JPEGs. Training batches are shuffled and augmented and the
    dataset repeats; evaluation batches keep file order.
    """
    ds = tf.data.Dataset.from_tensor_slices(
        (list(paths), list(ages)) if ages is not None else list(paths)
    )

    def load(path, *rest):
        image = tf.cast(_load(path, image_size), tf.uint8)
        return (image, *rest) if rest else image

    ds = ds.map(load, num_parallel_calls=AUTOTUNE).cache()
    if training:
        ds = ds.shuffle(min(len(paths), 20000), seed=seed, reshuffle_each_iteration=True).repeat()
        ds = ds.map(
            lambda img, age: (_augment(tf.cast(img, tf.float32), image_size), age),
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
