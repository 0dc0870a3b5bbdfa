"""Labelled faces (`file_name,real_age[,gender,race,source]`): load, validate, split.

Bad rows are never silently dropped: each one is reported with its row number and reason,
and the caller chooses between skipping them and stopping (`strict=True`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("file_name", "real_age")
MAX_AGE = 116


class LabelsError(ValueError):
    """The labels file cannot be used as asked."""


@dataclass(frozen=True)
class LabelProblem:
    row: int  # 1-based data row, as a spreadsheet shows it (header is row 1)
    file_name: str
    reason: str


@dataclass(frozen=True)
class Labels:
    """Usable rows plus the rows that were left out and why."""

    frame: pd.DataFrame  # file_name, real_age (float), optional gender/race/source, path
    problems: list[LabelProblem]

    def describe_problems(self, limit: int = 10) -> str:
        lines = [f"row {p.row} ({p.file_name or '?'}): {p.reason}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit} more")
        return "\n".join(lines)


def load_labels(
    csv_path: Path, images_dir: Path, *, strict: bool = False, check_images: bool = False
) -> Labels:
    """Read and check a labels CSV against the image folder.

    Rows with a missing image, a non-numeric/negative/absurd age, or a repeated file name
    are problems; with ``check_images`` so are images that do not decode (one corrupt file
    would otherwise stop a training run hours in). With ``strict`` any problem raises
    `LabelsError` naming the rows; otherwise they are returned beside the clean frame.
    """
    try:
        raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except FileNotFoundError as exc:
        raise LabelsError(f"labels file not found: {csv_path}") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise LabelsError(f"labels file {csv_path} is not a readable CSV: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise LabelsError(f"labels file {csv_path} lacks column(s): {', '.join(missing)}")
    if not images_dir.is_dir():
        raise LabelsError(f"image folder not found: {images_dir}")

    present = {p.name for p in images_dir.iterdir()}
    problems: list[LabelProblem] = []
    keep: list[int] = []
    seen: dict[str, int] = {}
    ages = pd.to_numeric(raw["real_age"].str.strip(), errors="coerce")
    for i, (name, age_text, age) in enumerate(zip(raw["file_name"], raw["real_age"], ages)):
        row = i + 2
        name = name.strip()
        reason = None
        if not name:
            reason = "empty file_name"
        elif name in seen:
            reason = f"duplicate file_name (first on row {seen[name]})"
        elif np.isnan(age):
            reason = f"real_age {age_text!r} is not a number"
        elif age < 0 or age > MAX_AGE:
            reason = f"real_age {age_text} is outside 0-{MAX_AGE}"
        elif name not in present:
            reason = "image file missing"
        elif check_images:
            reason = _unreadable(images_dir / name)
        if name and name not in seen:
            seen[name] = row
        if reason:
            problems.append(LabelProblem(row, name, reason))
        else:
            keep.append(i)

    if strict and problems:
        shown = Labels(raw.iloc[[]], problems).describe_problems()
        raise LabelsError(f"{len(problems)} bad label row(s) in {csv_path}:\n{shown}")

    frame = raw.iloc[keep].copy()
    frame["file_name"] = frame["file_name"].str.strip()
    frame["real_age"] = ages.iloc[keep].astype("float32")
    for column in ("gender", "race"):
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64")
    frame["path"] = [str(images_dir / n) for n in frame["file_name"]]
    return Labels(frame.reset_index(drop=True), problems)


def _unreadable(path: Path) -> str | None:
    """Why an image cannot be used, or None when it decodes fully."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        return f"image does not decode ({type(exc).__name__}: {exc})"[:200]
    return None


def split_of(file_name: str, seed: int, val_frac: float, test_frac: float) -> str:
    """Stable train/val/test assignment from a hash of the name: reproducible on any machine
    and unchanged when rows are added or removed, unlike a shuffled index."""
    digest = hashlib.sha256(f"{seed}:{file_name}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_frac:
        return "test"
    if u < test_frac + val_frac:
        return "val"
    return "train"


def split_labels(
    frame: pd.DataFrame, seed: int = 1337, val_frac: float = 0.1, test_frac: float = 0.15
) -> dict[str, pd.DataFrame]:
    """Split into train/val/test; val steers early stopping, test is only for reporting."""
    if not 0 <= val_frac < 1 or not 0 <= test_frac < 1 or val_frac + test_frac >= 1:
        raise ValueError("val_frac and test_frac must be in [0, 1) and sum to less than 1")
    which = frame["file_name"].map(lambda n: split_of(n, seed, val_frac, test_frac))
    return {s: frame[which == s].reset_index(drop=True) for s in ("train", "val", "test")}
