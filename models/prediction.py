"""The card's prediction in numpy, one definition for every runtime (Keras, LiteRT).

A runtime only has to say what the network outputs for a batch of face crops: the age, the
age distribution and the P(under) head, each raw, one row per image. Everything the card
adds on top happens here, the same way whichever runtime ran the network:

- the mirror average (`prediction.mirror_average`): each face and its mirror image go
  through the network in one batch and their outputs are averaged;
- the calibrated age distribution: p ** (1 / T), renormalised (models/calibrate.py);
- the calibrated P(under) head: its logit divided by the head's temperature.

Every call runs the network at one fixed batch shape (the last batch is padded), so a graph
is traced or resized once per process instead of once per distinct batch length.
No TensorFlow or Keras here: the LiteRT scoring path imports this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# raw(images float32 (B, S, S, 3)) -> (ages (B,), distributions (B, K), P(under) (B,)); K may
# be 0 (regression head) and the P(under) may be zeros (no head): `PredictionSpec` says.
RawFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class PredictionSpec:
    """What the card asks of the prediction, read once from the model and its card."""

    image_size: int
    mirror: bool = False
    distribution: bool = True  # the dex head: an age distribution to calibrate
    temperature: float = 1.0  # of the age distribution
    under_temperature: float | None = None  # None: the model has no P(under) head

    @classmethod
    def of(cls, model) -> PredictionSpec:
        """The spec of a loaded model (anything with AgeModel's card properties)."""
        return cls(int(model.image_size), bool(model.mirror), bool(model.has_distribution),
                   float(model.temperature),
                   model.under_temperature if model.under_head_age is not None else None)


def check_faces(faces: np.ndarray, size: int) -> None:
    """Raise ValueError unless `faces` is a batch of size x size RGB crops."""
    if faces.ndim != 4 or faces.shape[1:] != (size, size, 3):
        raise ValueError(f"expected faces of shape (N, {size}, {size}, 3), got {faces.shape}")


def predict_all(raw: RawFn, spec: PredictionSpec, faces: np.ndarray, batch_size: int = 32
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(ages (N,), calibrated distributions (N, K) or None, calibrated P(under) (N,) or None)
    for face crops (N, S, S, 3) with values 0-255, `batch_size` faces per network call
    (twice that many images with the mirror average)."""
    check_faces(faces, spec.image_size)
    n_faces = len(faces)
    ages = np.empty(n_faces, np.float32)
    probs = np.empty((n_faces, 0), np.float32)
    under = np.empty(n_faces, np.float32)
    for start in range(0, n_faces, batch_size):
        chunk = faces[start : start + batch_size].astype(np.float32)
        n = len(chunk)
        if n < batch_size:
            chunk = np.concatenate(
                [chunk, np.zeros((batch_size - n, *chunk.shape[1:]), np.float32)])
        images = np.concatenate([chunk, chunk[:, :, ::-1]]) if spec.mirror else chunk
        age, dist, head = finish(*raw(images), spec)
        if start == 0:
            probs = np.empty((n_faces, dist.shape[-1]), np.float32)
        ages[start : start + n] = age[:n]
        probs[start : start + n] = dist[:n]
        under[start : start + n] = head[:n]
    return (ages, probs if spec.distribution else None,
            under if spec.under_temperature is not None else None)


def finish(age: np.ndarray, probs: np.ndarray, under: np.ndarray, spec: PredictionSpec
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The network's raw outputs for a batch (and, with the mirror average, its mirror
    images after it) to the card's (ages, calibrated distributions, calibrated P(under))."""
    age = np.asarray(age, np.float32).reshape(len(age), -1)[:, 0]
    probs = np.asarray(probs, np.float32).reshape(len(age), -1)
    under = np.asarray(under, np.float32).reshape(len(age), -1)
    under = under[:, 0] if under.shape[1] else np.zeros(len(age), np.float32)
    if spec.mirror:
        n = len(age) // 2
        age, probs, under = ((v[:n] + v[n:]) / 2 for v in (age, probs, under))
    if spec.distribution and spec.temperature != 1.0:
        logp = np.log(np.maximum(probs, 1e-12)) / spec.temperature
        logp -= logp.max(axis=-1, keepdims=True)
        e = np.exp(logp)
        probs = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    if spec.under_temperature not in (None, 1.0):
        p = np.clip(under.astype(np.float64), 1e-7, 1.0 - 1e-7)
        logit = (np.log(p) - np.log1p(-p)) / spec.under_temperature
        under = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return age.astype(np.float32), probs, under.astype(np.float32)


class CardModel:
    """What every runtime's model reads from its card, and the calls built on `predict_all`.

    A subclass provides `card`, `image_size`, `has_distribution`, `under_head_age` and
    `predict_all`; the scoring job sees no difference between runtimes beyond the line's
    `runtime`.
    """

    card: dict
    runtime = "keras"

    @property
    def under_temperature(self) -> float:
        head = (self.card.get("calibration") or {}).get("under_head") or {}
        return float(head.get("temperature", 1.0))

    @property
    def under_source(self) -> str:
        """Where the card's Challenge 25 operating point reads P(under) from: the model's
        own P(under) head, or its age distribution (the default, and for older models)."""
        return str((self.card.get("calibration") or {}).get("source", "distribution"))

    @property
    def temperature(self) -> float:
        """The calibration the card names (models/calibrate.py); 1.0: none."""
        return float((self.card.get("calibration") or {}).get("temperature", 1.0))

    @property
    def version(self) -> str:
        return str(self.card.get("version", "unversioned"))

    def _under_age_from_card(self) -> float:
        head = (self.card.get("calibration") or {}).get("under_head") or {}
        return float(head.get("age", self.card.get("recipe", {}).get("under_age") or 25.0))

    def warm_up(self, batch_size: int = 32) -> None:
        """Run one batch now, at load time (graph tracing, tensor allocation), instead of
        inside the first batch of photos."""
        size = self.image_size
        self.predict_faces(np.zeros((1, size, size, 3), np.uint8), batch_size=batch_size)

    def predict_faces(self, faces: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Ages in years for face crops (N, S, S, 3) with values 0-255."""
        return self.predict_all(faces, batch_size)[0]

    def predict_distribution(self, faces: np.ndarray, batch_size: int = 32
                             ) -> tuple[np.ndarray, np.ndarray | None]:
        """(ages (N,), calibrated age distributions (N, 101) or None without one).

        The ages are the distribution's mean as trained (what the card's error figures
        measure); the distribution has the card's temperature applied, so the probabilities
        read from it (e.g. P(age < 25)) mean what they say (models/calibrate.py).
        """
        return self.predict_all(faces, batch_size)[:2]

    def p_under(self, probs: np.ndarray | None, head: np.ndarray | None, age: float
                ) -> np.ndarray | None:
        """P(age < `age`) per face from `predict_all`'s outputs: the P(under) head where the
        card chose it, for this age, else the calibrated distribution; None without either."""
        from models.calibrate import p_under

        if head is not None and self.reads_head(age):
            return head.astype(np.float64)
        return None if probs is None else p_under(probs, age)

    def reads_head(self, age: float) -> bool:
        """Whether P(age < `age`) comes from the P(under) head (the card chose it, for
        this age) rather than from the age distribution."""
        return self.under_source == "under_head" and self.under_head_age == age
