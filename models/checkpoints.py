"""What a training run leaves in its checkpoint folder, each file whole or not there.

Everything that must outlive a killed process lives in ``checkpoint_dir`` (outside git):
the latest weights and optimizer state (Keras' BackupAndRestore, here AtomicBackup), the
best weights by validation MAE, the per-epoch history CSV and the config the run was
started with. A run started again with ``resume=True`` continues from the last saved epoch;
history and best weights are rolled back to that epoch, so the three always agree
(EpochRecords).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import keras
import pandas as pd


class AtomicBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, with each of its files written aside and renamed into place.

    Keras writes the weights and the epoch metadata in place; a kill in the middle of the
    metadata write leaves a cut-short JSON that --resume cannot read, and the resume is lost.
    Here every file (the backup, its previous copy, the metadata) is whole or not there.
    """

    def __init__(self, backup_dir: Path):
        super().__init__(str(backup_dir), delete_checkpoint=False, double_checkpoint=True)

    def _save_model(self):
        Path(self.backup_dir).mkdir(parents=True, exist_ok=True)
        weights = Path(self._weights_path)
        metadata = Path(self._training_metadata_path)
        if weights.is_file():
            _copy_whole(weights, Path(self._prev_weights_path))
        if metadata.is_file():
            _copy_whole(metadata, Path(self._prev_training_metadata_path))
        aside = weights.with_name(f".{weights.name}.tmp.weights.h5")
        self.model.save_weights(filepath=str(aside), overwrite=True)
        _fsync_replace(aside, weights)
        _write_whole(metadata, json.dumps(
            {"epoch": self._current_epoch, "batch": self._last_batch_seen}))


class EpochRecords(keras.callbacks.Callback):
    """The history CSV and the best weights, kept consistent with Keras' backup.

    BackupAndRestore's backup is the commit point: a resumed run starts after the last epoch
    it holds. This callback runs just before it at each epoch's end and writes, each whole
    (aside, flushed, renamed): the epoch's best weights when val_mae improved, named by
    epoch (``best-e0007.weights.h5``), then the whole history. A kill between these writes
    and the backup's leaves records of an epoch the backup does not hold; the resumed run
    drops them at its first epoch (history rows and best files from that epoch on), so the
    history always lists exactly the backed-up epochs and the best weights are those of its
    lowest val_mae. (Before, the history row came after the backup, and a kill in between
    lost it.) Superseded best files are deleted once two later epochs are backed up
    (double_checkpoint may fall back one epoch).
    """

    def __init__(self, checkpoint_dir: Path) -> None:
        super().__init__()
        self.checkpoint_dir = checkpoint_dir
        self.rows: list[dict[str, Any]] | None = None

    def on_epoch_begin(self, epoch, logs=None):
        checkpoint_dir = self.checkpoint_dir
        if self.rows is None:  # the first epoch of this session: roll back to it
            self.rows = [r for r in _read_history(checkpoint_dir) if r["epoch"] < epoch]
            _write_history(checkpoint_dir, self.rows)
            adopt_legacy_best(checkpoint_dir, best_epoch(self.rows))
            for f in _best_files(checkpoint_dir):
                if _best_epoch(f) >= epoch:
                    f.unlink()
        keep = best_epoch([r for r in self.rows if r["epoch"] < epoch - 1])
        for f in _best_files(checkpoint_dir):
            if _best_epoch(f) < epoch - 1 and _best_epoch(f) != keep:
                f.unlink()

    def on_epoch_end(self, epoch, logs=None):
        assert self.rows is not None
        row = {"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}
        value = row.get("val_mae")
        previous = best_epoch(self.rows)
        best = math.inf if previous is None else next(
            r["val_mae"] for r in self.rows if r["epoch"] == previous)
        if value is not None and value < best:  # NaN never counts as better
            path = best_weights_path(self.checkpoint_dir, epoch)
            # Keras only writes weights to names ending in .weights.h5.
            aside = path.with_name(f".{path.name}.tmp.weights.h5")
            self.model.save_weights(str(aside), overwrite=True)
            _fsync_replace(aside, path)
        self.rows.append(row)
        _write_history(self.checkpoint_dir, self.rows)


def _write_whole(path: Path, text: str) -> None:
    aside = path.with_name(f".{path.name}.tmp")
    aside.write_text(text)
    _fsync_replace(aside, path)


def _copy_whole(source: Path, target: Path) -> None:
    aside = target.with_name(f".{target.name}.tmp{''.join(target.suffixes[-2:])}")
    shutil.copyfile(source, aside)
    _fsync_replace(aside, target)


def adopt_legacy_best(checkpoint_dir: Path, epoch: int | None) -> None:
    """A run checkpointed before best files were named by epoch kept one `best.weights.h5`:
    resumed now, it becomes the file of the history's best epoch."""
    legacy = Path(checkpoint_dir) / "best.weights.h5"
    if epoch is not None and legacy.is_file() and not _best_files(checkpoint_dir):
        os.replace(legacy, best_weights_path(checkpoint_dir, epoch))


def best_weights_path(checkpoint_dir: Path, epoch: int) -> Path:
    return Path(checkpoint_dir) / f"best-e{epoch:04d}.weights.h5"


def best_epoch(rows: list[dict[str, Any]]) -> int | None:
    """The epoch with the lowest val_mae (the first of equals), or None."""
    scored = [r for r in rows if r.get("val_mae") is not None and r["val_mae"] == r["val_mae"]]
    return min(scored, key=lambda r: (r["val_mae"], r["epoch"]))["epoch"] if scored else None


def _best_files(checkpoint_dir: Path) -> list[Path]:
    return sorted(Path(checkpoint_dir).glob("best-e*.weights.h5"))


def _best_epoch(path: Path) -> int:
    return int(path.name.removeprefix("best-e").split(".", 1)[0])


def _read_history(checkpoint_dir: Path) -> list[dict[str, Any]]:
    path = Path(checkpoint_dir) / "history.csv"
    if not path.is_file() or path.stat().st_size == 0:
        return []
    return pd.read_csv(path).to_dict("records")


def _write_history(checkpoint_dir: Path, rows: list[dict[str, Any]]) -> None:
    path = Path(checkpoint_dir) / "history.csv"
    aside = path.with_name(f".{path.name}.tmp")
    pd.DataFrame(rows, columns=_columns(rows)).to_csv(aside, index=False)
    _fsync_replace(aside, path)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    keys = sorted({k for r in rows for k in r} - {"epoch"})
    return ["epoch", *keys]


def _fsync_replace(aside: Path, path: Path) -> None:
    with open(aside, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(aside, path)
