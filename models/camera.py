"""What a cheap checkout camera does to a face: the conditions, and how to apply them.

One `Camera` is a set of conditions at given strengths; `degrade_face` applies it to a face
crop and `degrade_frame` to a whole checkout photo. The same definitions serve the bench
(bench/camera_quality.py: each condition alone at two strengths, and all combined) and
training (models/data.py: each face sometimes clean, sometimes degraded with strengths
drawn from `RANGES`), so the model is trained on the conditions it is measured on.

Where the strengths come from (checkout and CCTV cameras; see bench/camera_quality.py):

- exposure, in stops of linear light: a shopper backlit by a shop window or the street door
  is 1-2 stops under, one under a spotlight or by a sunny window 1-1.5 over (highlights
  clip); auto-exposure meters the whole frame, not the face;
- low contrast: a fogged or scratched dome, haze, flat light: the face's spread x0.6-0.4;
- colour cast: white balance fooled by fluorescent (green), sodium or tungsten (warm) or
  LED (blue) light: channel gains up to about +-30 %;
- focus blur: a fixed-focus lens set for the counter, a shopper nearer or farther: a
  Gaussian of sigma 1-2 camera pixels at a 120 px face;
- motion blur: a shopper moving during a 1/30-1/60 s exposure: 5-9 camera pixels;
- sensor noise: small sensors at high gain in dim light: Gaussian, std 6-12 of 255;
- JPEG: NVR snapshots and stream grabs are stored at quality 20-50;
- small faces: a wide-angle camera over the till sees a face at 64 px, or 40 px at the back
  of the queue (the detector's minimum);
- head roll: shoppers look down at the card reader or tilt to the screen: 10-20 degrees.

Nothing here writes an image: JPEG round trips happen in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from io import BytesIO
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

# The size, in camera pixels, at which a face crop is degraded when the camera does not
# set one: a 1080p checkout camera at about a metre sees a face this size.
CAMERA_FACE_PX = 120
_GAMMA = 2.2  # sRGB, near enough: exposure is a change of linear light, not of pixel values


@dataclass(frozen=True)
class Camera:
    """One set of camera conditions; the defaults change nothing.

    `exposure` is in stops (negative: under-exposed); `contrast` scales the spread around
    the mean; `cast` is an RGB gain; `blur` a Gaussian sigma and `motion` a streak length,
    both in camera pixels at the face's camera size; `noise` the std of sensor noise in
    8-bit levels; `jpeg` a JPEG quality (0: none); `face_px` the face's side in the photo
    (0: `CAMERA_FACE_PX`); `roll` the head's tilt in degrees; `motion_angle` the streak's
    direction in degrees.
    """

    exposure: float = 0.0
    contrast: float = 1.0
    cast: tuple[float, float, float] = (1.0, 1.0, 1.0)
    blur: float = 0.0
    motion: float = 0.0
    motion_angle: float = 0.0
    noise: float = 0.0
    jpeg: int = 0
    face_px: int = 0
    roll: float = 0.0

    @property
    def clean(self) -> bool:
        """True when the camera changes nothing."""
        return self == Camera()

    def to_card(self) -> dict[str, Any]:
        """The non-default settings, for a model card or a bench line."""
        default = asdict(Camera())
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items() if v != default[k]}


# Each condition alone at two strengths (mild, strong): the bench's rows.
CONDITIONS: dict[str, tuple[Camera, Camera]] = {
    "under_exposed": (Camera(exposure=-1.0), Camera(exposure=-2.0)),
    "over_exposed": (Camera(exposure=1.0), Camera(exposure=1.5)),
    "low_contrast": (Camera(contrast=0.6), Camera(contrast=0.4)),
    "colour_cast": (Camera(cast=(1.15, 1.0, 0.85)), Camera(cast=(1.3, 1.0, 0.7))),
    "focus_blur": (Camera(blur=1.0), Camera(blur=2.0)),
    "motion_blur": (Camera(motion=5.0), Camera(motion=9.0)),
    "sensor_noise": (Camera(noise=6.0), Camera(noise=12.0)),
    "jpeg": (Camera(jpeg=50), Camera(jpeg=20)),
    "small_face": (Camera(face_px=64), Camera(face_px=40)),
    "head_roll": (Camera(roll=10.0), Camera(roll=20.0)),
}

# All conditions at once: a poor camera on an ordinary day, and a bad one on a bad day.
COMBINED: dict[str, Camera] = {
    "mild": Camera(exposure=-0.5, contrast=0.85, cast=(1.1, 1.0, 0.9), blur=0.7, motion=3.0,
                   noise=4.0, jpeg=50, face_px=100, roll=10.0),
    "strong": Camera(exposure=-1.0, contrast=0.75, cast=(1.15, 1.0, 0.85), blur=1.0,
                     motion=4.0, noise=6.0, jpeg=35, face_px=72, roll=15.0),
}

# Training draws each condition with `RANGE_PROB`, its strength uniform in its range: the
# bench's mild-to-strong span, so training sees what the bench measures.
RANGES: dict[str, tuple[float, float]] = {
    "exposure": (-2.0, 1.5),
    "contrast": (0.4, 1.0),
    "cast": (0.7, 1.3),  # each of red and blue, green fixed
    "blur": (0.0, 2.0),
    "motion": (0.0, 9.0),
    "noise": (0.0, 12.0),
    "jpeg": (20, 90),
    "face_px": (40, 160),
    "roll": (-20.0, 20.0),
}
RANGE_PROB = 0.35


def random_camera(rng: np.random.Generator, prob: float = RANGE_PROB) -> Camera:
    """A camera whose every condition is on with probability `prob`, at a strength drawn
    uniformly from `RANGES` (a random mix, as a real camera combines several)."""

    def on() -> bool:
        return bool(rng.random() < prob)

    fields: dict[str, Any] = {}
    if on():
        fields["exposure"] = float(rng.uniform(*RANGES["exposure"]))
    if on():
        fields["contrast"] = float(rng.uniform(*RANGES["contrast"]))
    if on():
        red, blue = rng.uniform(*RANGES["cast"], size=2)
        fields["cast"] = (float(red), 1.0, float(blue))
    if on():
        fields["blur"] = float(rng.uniform(*RANGES["blur"]))
    if on():
        fields["motion"] = float(rng.uniform(*RANGES["motion"]))
        fields["motion_angle"] = float(rng.uniform(0.0, 180.0))
    if on():
        fields["noise"] = float(rng.uniform(*RANGES["noise"]))
    if on():
        fields["jpeg"] = int(rng.integers(RANGES["jpeg"][0], RANGES["jpeg"][1] + 1))
    if on():
        fields["face_px"] = int(rng.integers(RANGES["face_px"][0], RANGES["face_px"][1] + 1))
    if on():
        fields["roll"] = float(rng.uniform(*RANGES["roll"]))
    return Camera(**fields)


def camera_from_card(entry: Mapping[str, Any]) -> Camera:
    """The inverse of `Camera.to_card`."""
    fields = dict(entry)
    if "cast" in fields:
        fields["cast"] = tuple(float(v) for v in fields["cast"])
    return Camera(**fields)


# --------------------------------------------------------------------------- applying


def degrade_face(face: np.ndarray, camera: Camera, rng: np.random.Generator) -> np.ndarray:
    """A face crop (HxWx3 uint8) as `camera` would have taken it, at the same size.

    The crop is taken to the face's camera size (`face_px`, else `CAMERA_FACE_PX`), where
    the camera's pixel-sized effects (blur, noise, JPEG blocks) belong, degraded there and
    brought back to its own size, as the job's crop brings any face to the model's size.
    """
    _check(face)
    if camera.clean:
        return face.copy()
    height, width = face.shape[:2]
    side = camera.face_px or CAMERA_FACE_PX
    image = face
    if camera.roll:
        image = rotate(image, camera.roll)
    image = _resize(image, side, side)
    image = _sensor(image, camera, rng)
    return _resize(image, width, height)


def degrade_frame(frame: np.ndarray, camera: Camera, rng: np.random.Generator) -> np.ndarray:
    """A whole photo as `camera` would have taken it: light, colour, blur, noise, JPEG, in
    the photo's own pixels. Face size and head roll belong to the scene (where the face is
    pasted and how it is turned), so they are not applied here."""
    _check(frame)
    return _sensor(frame, replace(camera, face_px=0, roll=0.0), rng)


def _sensor(image: np.ndarray, camera: Camera, rng: np.random.Generator) -> np.ndarray:
    """Optics, then sensor, then encoder: blur before noise, JPEG last, as in a camera."""
    if camera.blur > 0:
        image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(camera.blur)))
    x = image.astype(np.float32)
    if camera.motion > 1:
        x = _motion(x, camera.motion, camera.motion_angle)
    if camera.exposure:
        linear = (np.clip(x, 0, 255) / 255.0) ** _GAMMA * (2.0 ** camera.exposure)
        x = np.clip(linear, 0, 1) ** (1 / _GAMMA) * 255.0
    if camera.contrast != 1.0:
        mean = float(x.mean())
        x = mean + (x - mean) * camera.contrast
    if camera.cast != (1.0, 1.0, 1.0):
        x = x * np.asarray(camera.cast, np.float32)
    if camera.noise > 0:
        # Luminance noise plus weaker chroma noise, as a Bayer sensor's demosaicked output.
        luma = rng.normal(0.0, camera.noise, x.shape[:2] + (1,))
        chroma = rng.normal(0.0, camera.noise * 0.5, x.shape)
        x = x + luma + chroma
    out = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if camera.jpeg:
        out = jpeg_roundtrip(out, camera.jpeg)
    return out


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """The image encoded as JPEG at `quality` and decoded again, in memory."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    buffer = BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def rotate(image: np.ndarray, degrees: float, center: tuple[float, float] | None = None
           ) -> np.ndarray:
    """`image` turned by `degrees` (counter-clockwise) about `center` (default: its
    middle), the same size; what comes in at the corners is the image mirrored at its
    edges, not black, so no hard edge appears that a real photo would not have."""
    _check(image)
    height, width = image.shape[:2]
    pad = int(np.ceil(0.5 * max(height, width)))
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="symmetric")
    cx, cy = center if center is not None else (width / 2, height / 2)
    turned = Image.fromarray(padded).rotate(degrees, Image.Resampling.BILINEAR,
                                            center=(cx + pad, cy + pad))
    return np.asarray(turned, dtype=np.uint8)[pad : pad + height, pad : pad + width].copy()


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR,
                                            reducing_gap=2.0)
    return np.asarray(resized, dtype=np.uint8)


def _motion(x: np.ndarray, length: float, angle: float) -> np.ndarray:
    """A straight streak of `length` pixels at `angle`: the mean of the image shifted along
    it (edges repeated), as a moving subject's exposure integrates."""
    steps = max(2, int(round(length)))
    radians = np.deg2rad(angle)
    pad = steps
    padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    height, width = x.shape[:2]
    total = np.zeros_like(x)
    for t in np.linspace(-(length - 1) / 2, (length - 1) / 2, steps):
        dx, dy = int(round(t * np.cos(radians))), int(round(t * np.sin(radians)))
        total += padded[pad + dy : pad + dy + height, pad + dx : pad + dx + width]
    return total / steps


def _check(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected HxWx3 uint8 RGB, got {image.dtype} {image.shape}")
