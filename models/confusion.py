"""The model's confusion over ages, measured on validation faces the way the job sees them.

Marketing tables are built from many shoppers' age groups, so a model that puts shoppers in
the wrong group half the time (a 5.5-year error against 7-10-year groups) biases every share
and lift toward the middle group. `analytics.estimates` removes that bias, and it needs to
know how the model errs: for each true age, how often each estimated age comes out. That is
this module's confusion, counts of (true whole-year age, estimated whole-year age) pairs.

It is measured under the crop contract: each validation face is pasted into a checkout scene
(demo/scenes.py), and the scene goes through the job's own path (decode, detect, crop,
model: `models.score.score_batch`), so the errors of detection and framing are in it too.
Ages, not groups, are stored, so the confusion holds for any --age-bins; the counts are kept
(not rates) so a reader knows how sure each row is (`analytics.estimates` resamples them).
It lives on the model card under "confusion"; `ageseg train` writes it for every new model
and `ageseg confusion MODEL --faces DIR` adds it to an existing model without retraining.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MAX_AGE = 100  # estimated and true ages are clipped to 0..MAX_AGE whole years
CARD_KEY = "confusion"


@dataclass(frozen=True)
class Confusion:
    """Counts of (true age, estimated age) in whole years, 0..MAX_AGE each, plus the faces
    of each true age that came out with no estimate (no face found)."""

    counts: np.ndarray  # (MAX_AGE + 1, MAX_AGE + 1) int64: [true year, estimated year]
    unaged: np.ndarray  # (MAX_AGE + 1,) int64: faces of that true age with no estimate
    source: str = ""  # what was measured: faces, split, detector, when
    scenes: int = 1  # scenes per face and camera condition (pairs of one face are alike)

    @classmethod
    def from_ages(cls, true_ages: Iterable[float], estimated: Iterable[float],
                  source: str = "") -> Confusion:
        """Counts from paired ages; a NaN estimate counts as unaged."""
        true = np.clip(np.floor(np.asarray(list(true_ages), np.float64)), 0, MAX_AGE)
        est = np.asarray(list(estimated), np.float64)
        aged = ~np.isnan(est)
        counts = np.zeros((MAX_AGE + 1, MAX_AGE + 1), np.int64)
        np.add.at(counts, (true[aged].astype(int),
                           np.clip(np.floor(est[aged]), 0, MAX_AGE).astype(int)), 1)
        unaged = np.bincount(true[~aged].astype(int), minlength=MAX_AGE + 1).astype(np.int64)
        return cls(counts, unaged, source)

    @property
    def faces(self) -> int:
        return int(self.counts.sum() + self.unaged.sum())

    def to_card(self) -> dict[str, Any]:
        """JSON for the card: the non-zero cells as [true, estimated, count] triples."""
        true, est = np.nonzero(self.counts)
        return {
            "kind": "true_year x estimated_year counts",
            "max_age": MAX_AGE,
            "faces": self.faces,
            "pairs": [[int(t), int(e), int(self.counts[t, e])] for t, e in zip(true, est)],
            "unaged": {str(int(t)): int(n) for t, n in enumerate(self.unaged) if n},
            "source": self.source,
            "scenes_per_condition": self.scenes,
        }

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> Confusion | None:
        """The card's confusion, or None for a model measured before it existed."""
        entry = card.get(CARD_KEY)
        if not isinstance(entry, Mapping) or not entry.get("pairs"):
            return None
        counts = np.zeros((MAX_AGE + 1, MAX_AGE + 1), np.int64)
        for true, est, n in entry["pairs"]:
            counts[min(int(true), MAX_AGE), min(int(est), MAX_AGE)] += int(n)
        unaged = np.zeros(MAX_AGE + 1, np.int64)
        for true, n in (entry.get("unaged") or {}).items():
            unaged[min(int(true), MAX_AGE)] += int(n)
        return cls(counts, unaged, str(entry.get("source", "")),
                   int(entry.get("scenes_per_condition", 1)))

    def group_accuracy(self, lowers: tuple[int, ...], min_age: int = 0) -> float:
        """Share of aged faces (true age >= min_age) whose estimate is in their true group."""
        group = np.searchsorted(np.asarray(lowers), np.arange(MAX_AGE + 1), side="right") - 1
        counts = self.counts[min_age:]
        same = group[min_age:, None] == group[None, :]
        return float((counts * same).sum() / max(1, counts.sum()))


# Camera conditions for benches: a checkout camera's usual faults, applied to a scene.
DEGRADATIONS = ("low_res", "blur", "dark", "noise", "jpeg")


def degrade_scene(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One scene as a worse camera would take it: one or two of DEGRADATIONS, moderate.

    A stand-in for the camera-conditions bench's own conditions where that does not exist:
    downscaled to 40-60 % and back, defocus blur, underexposure, sensor noise, or heavy JPEG.
    """
    from PIL import Image, ImageEnhance, ImageFilter

    picture = Image.fromarray(image)
    for kind in rng.choice(DEGRADATIONS, size=int(rng.integers(1, 3)), replace=False):
        if kind == "low_res":
            w, h = picture.size
            f = float(rng.uniform(0.4, 0.6))
            picture = picture.resize((int(w * f), int(h * f)), Image.BILINEAR).resize((w, h))
        elif kind == "blur":
            picture = picture.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.5, 2.5))))
        elif kind == "dark":
            picture = ImageEnhance.Brightness(picture).enhance(float(rng.uniform(0.35, 0.55)))
        elif kind == "noise":
            pixels = np.asarray(picture, np.float32) + rng.normal(0, 12.0, image.shape)
            picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        else:
            buffer = io.BytesIO()
            picture.save(buffer, format="JPEG", quality=int(rng.integers(12, 25)))
            picture = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return np.asarray(picture)


def scene_bytes(face_path: Path, rng: np.random.Generator,
                degrade: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None
                ) -> bytes:
    """A JPEG checkout scene showing the face file (demo/scenes.py), as the till stores it."""
    from PIL import Image

    from demo.scenes import render_checkout_scene
    from models.photos import decode_photo, read_photo

    face = decode_photo(read_photo(Path(face_path)))
    scene = render_checkout_scene(face, rng, paste="square" if rng.random() < 0.5 else "oval")
    image = scene.image if degrade is None else degrade(scene.image, rng)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(rng.integers(75, 93)))
    return buffer.getvalue()


def age_scenes(faces: pd.DataFrame, model, detector, *, seed: int = 0,
               degrade: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
               batch_size: int = 32,
               on_batch: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Each face (columns path, real_age) as a checkout scene through the job's scoring path.

    Returns the faces with `age` (NaN: no face found), `p_under` and `status` added: the
    estimates the nightly job would write for these shoppers.
    """
    from models.score import score_batch

    rng = np.random.default_rng(seed)
    frames = []
    rows = list(faces.itertuples(index=False))
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        photos = [(start + i, scene_bytes(Path(r.path), rng, degrade))
                  for i, r in enumerate(chunk)]
        frames.append(score_batch(photos, model, detector, batch_size, challenge_age=25.0))
        if on_batch:
            on_batch(len(chunk))
    scored = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["age", "p_under", "status"])
    out = faces.reset_index(drop=True).copy()
    out["age"] = scored["age"].astype("float64").to_numpy()
    out["p_under"] = scored["p_under"].to_numpy()
    out["status"] = scored["status"].to_numpy()
    return out


CONDITIONS = ("clean", "degraded")


def measure_confusion(val_faces: pd.DataFrame, model, detector, *, seed: int = 0,
                      scenes: int = 2,
                      on_batch: Callable[[int], None] | None = None) -> Confusion:
    """The model's confusion on `val_faces` (path, real_age), each face as `scenes` clean
    checkout scenes and as many camera-degraded ones (`degrade_scene`).

    Both kinds, because a till camera takes both and the model errs differently on them: a
    clean-only confusion made degraded days worse than no correction on
    bench/marketing_truth.py. Several scenes per face, because the scene (size, framing,
    JPEG) moves the estimate too: two confusions from one scene per face each, measured
    with different scenes, gave group-mix errors of 0.035 and 0.044 at 50,000 receipts;
    their sum, 0.038."""
    ages, truth = [], []
    for i in range(scenes):
        for j, condition in enumerate(CONDITIONS):
            aged = age_scenes(val_faces, model, detector, seed=seed + 2 * i + j,
                              on_batch=on_batch,
                              degrade=degrade_scene if condition == "degraded" else None)
            ages.append(aged["age"])
            truth.append(aged["real_age"])
    source = (f"{len(val_faces)} validation faces, each as {scenes} clean and {scenes} "
              f"camera-degraded checkout scenes, detector {detector.name}, measured "
              f"{dt.date.today().isoformat()}")
    confusion = Confusion.from_ages(pd.concat(truth), pd.concat(ages), source)
    return dataclasses.replace(confusion, scenes=scenes)


def validation_faces(card: Mapping[str, Any], faces_dir: Path) -> pd.DataFrame:
    """The validation split the card's recipe held out, from FACES_DIR (labels.csv,
    final_files/): columns path, real_age."""
    from models.labels import load_labels, split_labels

    recipe = card.get("recipe", {})
    frame = load_labels(faces_dir / "labels.csv", faces_dir / "final_files").frame
    val = split_labels(frame, recipe.get("seed", 1337), recipe.get("val_frac", 0.1),
                       recipe.get("test_frac", 0.15))["val"]
    return val.assign(path=[str(faces_dir / "final_files" / n) for n in val["file_name"]])[
        ["path", "real_age"]].reset_index(drop=True)


def with_confusion(card: Mapping[str, Any], confusion: Confusion) -> dict[str, Any]:
    """A copy of the card carrying `confusion`."""
    return {**card, CARD_KEY: confusion.to_card()}


def write_card(path: Path, card: Mapping[str, Any], out: Path | None = None) -> Path:
    """The model file at `path` with its card replaced, written atomically to `out` (default:
    `path` itself): the architecture and weights are copied byte for byte, nothing retrained."""
    import json
    import os
    import tempfile
    import zipfile

    out = Path(out or path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(path) as src, zipfile.ZipFile(fh, "w",
                                                               zipfile.ZIP_DEFLATED) as dst:
                for item in src.infolist():
                    if item.filename == "card.json":
                        dst.writestr(item, json.dumps(dict(card), indent=2, sort_keys=True))
                    else:
                        dst.writestr(item, src.read(item.filename))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def add_to_model(model_path: Path, val_faces: pd.DataFrame, *, detector: str = "blazeface",
                 log: Callable[[str], None] = print) -> Confusion | None:
    """After training: measure the new model's confusion on its validation faces (path,
    real_age) through `detector` and write it onto the model's card. A detector that cannot
    be loaded leaves the card as it is, and says so: the marketing estimates then report
    the observed counts until `ageseg confusion` is run."""
    from models.persist import load_model, read_card

    if val_faces.empty:
        log("confusion: no validation faces, none written")
        return None
    try:
        from jobs.scoring_setup import make_detector

        found = make_detector(detector, 40)
        found.warm_up()
    except (ImportError, OSError, ValueError) as exc:
        log(f"confusion: detector {detector} unavailable ({exc}); run `ageseg confusion` later")
        return None
    model = load_model(Path(model_path))
    confusion = measure_confusion(val_faces[["path", "real_age"]], model, found)
    write_card(Path(model_path), with_confusion(read_card(Path(model_path)), confusion))
    log(f"confusion: {confusion.faces} validation scenes (clean and camera-degraded) on the "
        "card")
    return confusion
