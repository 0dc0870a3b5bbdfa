"""Photo preparation on several threads (models/score.py): the same rows, order, quarantine
records and Parquet bytes as on one thread; a detector fault quarantines only its photo;
the photos read ahead of the model stay bounded. Real BlazeFace, real photos of every kind,
a small untrained model, real SQLite files."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from PIL import Image

from tests.photos import blank_jpeg, scene_image, scene_jpeg, write_bad_photos
from tests.shop import DAY, fill_shop

ODD_SIZE = (375, 500)  # (height, width) of the one photo the flaky detector fails on


@pytest.fixture(scope="module")
def tiny_model(tiny_model_path):
    from models.persist import load_model

    return load_model(tiny_model_path, precision="float32")


def _photo_set(root: Path) -> list[tuple[int, str]]:
    """Every bad kind, photos without a face, and scenes: 30-odd (photo_id, path) rows."""
    paths = list(write_bad_photos(root))
    for i in range(12):
        rel = f"day/{i}.jpg"
        scene_jpeg(root / rel, seed=i)
        paths.append(rel)
    paths.append(str(blank_jpeg(root / "day/blank.jpg").relative_to(root)))
    return list(enumerate(paths, start=1))


def _score(photos, root, model, workers, batch_size=7, detector=None, stats=None):
    from models.blazeface import BlazeFaceDetector
    from models.score import score_photos

    frames = list(score_photos(photos, root, model, detector or BlazeFaceDetector(),
                               batch_size, challenge_age=25.0, prep_workers=workers,
                               stats=stats))
    return pd.concat(frames, ignore_index=True), [len(f) for f in frames]


def test_three_workers_score_exactly_as_one(tmp_path, tiny_model):
    from models.score import ScoringStats

    root = tmp_path / "photos"
    photos = _photo_set(root)
    assert len(photos) % 7, "the last batch should end mid-way"
    one, sizes_one = _score(photos, root, tiny_model, workers=1)
    stats = ScoringStats()
    three, sizes_three = _score(photos, root, tiny_model, workers=3, stats=stats)
    pd.testing.assert_frame_equal(three, one)
    assert sizes_three == sizes_one and sizes_one[-1] == len(photos) % 7
    assert one["photo_id"].tolist() == [pid for pid, _ in photos]
    assert {"ok", "no_face", "quarantined"} <= set(one["status"])
    assert stats.photos == len(photos) and stats.prep_workers == 3
    assert stats.line().startswith(f"scored {len(photos):,} photos in ")


def test_no_photos_no_frames(tmp_path, tiny_model):
    from models.blazeface import BlazeFaceDetector
    from models.score import score_photos

    for workers in (1, 3):
        assert list(score_photos([], tmp_path, tiny_model, BlazeFaceDetector(),
                                 prep_workers=workers)) == []


class FlakyDetector:
    """BlazeFace that raises on photos of ODD_SIZE, and counts how many of its kind are
    inside `detect_many` at once (shared between clones)."""

    def __init__(self, inner=None, counter=None):
        from models.blazeface import BlazeFaceDetector

        self.inner = inner or BlazeFaceDetector()
        self.name, self.confident = self.inner.name, self.inner.confident
        self.counter = counter or {"lock": threading.Lock(), "now": 0, "max": 0, "clones": 0}

    def clone(self):
        with self.counter["lock"]:
            self.counter["clones"] += 1
        return FlakyDetector(self.inner.clone(), self.counter)

    def decode_side(self, image_size):
        return self.inner.decode_side(image_size)

    def warm_up(self):
        self.inner.warm_up()

    def detect(self, image):
        if image.shape[:2] == ODD_SIZE:
            raise RuntimeError("interpreter fault")
        return self.inner.detect(image)

    def detect_many(self, images):
        with self.counter["lock"]:
            self.counter["now"] += 1
            self.counter["max"] = max(self.counter["max"], self.counter["now"])
        try:
            return [self.detect(image) for image in images]
        finally:
            with self.counter["lock"]:
                self.counter["now"] -= 1


def test_a_detector_fault_quarantines_that_photo_and_the_rest_go_on(tmp_path, tiny_model):
    root = tmp_path / "photos"
    photos = _photo_set(root)
    odd = Image.fromarray(scene_image(3)).resize(ODD_SIZE[::-1])
    odd.save(root / "day/odd.jpg", quality=90)
    with_odd = [*photos[:5], (999, "day/odd.jpg"), *photos[5:]]
    detector = FlakyDetector()
    got, _ = _score(with_odd, root, tiny_model, workers=3, detector=detector)
    expected, _ = _score(photos, root, tiny_model, workers=1)
    row = got.loc[got["photo_id"] == 999].iloc[0]
    assert (row["status"], row["reason"]) == ("quarantined", "detector_failed")
    assert "interpreter fault" in row["detail"] and np.isnan(row["age"])
    pd.testing.assert_frame_equal(got.loc[got["photo_id"] != 999].reset_index(drop=True),
                                  expected)
    assert detector.counter["clones"] == 2  # one detector per thread
    assert detector.counter["max"] <= 3


class CountingPhotos:
    """The day's photo rows as an iterator that counts how many the scorer has taken."""

    def __init__(self, rows):
        self.rows, self.taken = iter(rows), 0

    def __iter__(self):
        return self

    def __next__(self):
        row = next(self.rows)
        self.taken += 1
        return row


class CountingModel:
    """The tiny model, noting at each call how many photos had been taken from the reader
    beyond those already scored: what is held in memory ahead of the model."""

    def __init__(self, model, reader):
        self.model, self.reader = model, reader
        self.card, self.image_size = model.card, model.image_size
        self.scored, self.ahead = 0, []

    def predict_all(self, faces, batch_size=32):
        self.ahead.append(self.reader.taken - self.scored)
        out = self.model.predict_all(faces, batch_size)
        self.scored += len(faces)
        return out

    def p_under(self, probs, head, age):
        return self.model.p_under(probs, head, age)


def test_photos_in_flight_stay_bounded(tmp_path, tiny_model):
    from models.blazeface import BlazeFaceDetector
    from models.score import score_photos

    root = tmp_path / "photos"
    rows = [(i, f"s/{i}.jpg") for i in range(60)]
    for _, rel in rows:
        scene_jpeg(root / rel, seed=int(Path(rel).stem) % 5)
    workers, batch = 2, 4
    reader = CountingPhotos(rows)
    model = CountingModel(tiny_model, reader)
    n = sum(len(f) for f in score_photos(reader, root, model, BlazeFaceDetector(), batch,
                                         prep_workers=workers))
    assert n == len(rows) and len(model.ahead) == len(rows) // batch
    # The batch being scored plus at most workers + 1 read ahead of it: N + 2 batches.
    assert max(model.ahead) <= (workers + 2) * batch
    assert max(model.ahead) > batch  # it did read ahead


def _run_day(db_url: str, photo_root: Path, out: Path, model, workers: int, day=DAY):
    from analytics.config import NightConfig
    from analytics.pipeline import run_nightly
    from models.blazeface import BlazeFaceDetector
    from sql.engine import make_engine

    config = NightConfig(out / "marketing", out / "restricted", photo_root=photo_root,
                         age_bins="0-17,18-24,25-34,35-44,45-54,55-64,65+",
                         min_cell=3, batch_size=6, today=dt.date(2026, 12, 1),
                         prep_workers=workers)
    engine = make_engine(db_url)
    try:
        return run_nightly(engine, day, model, BlazeFaceDetector(), config,
                           run_id=f"{day}-fixed")
    finally:
        engine.dispose()


def test_one_and_three_workers_write_the_same_bytes(tmp_path, tiny_model):
    """The whole night, including a day with no photos: identical Parquet files, byte for
    byte (same run id), and identical quarantine records."""
    results = {}
    for workers in (1, 3):
        base = tmp_path / f"w{workers}"
        db_url = f"sqlite:///{base / 'shop.db'}"
        base.mkdir()
        fill_shop(db_url, base / "photos")
        summary = _run_day(db_url, base / "photos", base / "out", tiny_model, workers)
        empty = _run_day(db_url, base / "photos", base / "out", tiny_model, workers,
                         day=DAY + dt.timedelta(days=1))
        assert empty.counts["photos"] == 0 and summary.counts["quarantined"] > 5
        assert summary.scoring.prep_workers == workers
        files = {str(p.relative_to(base / "out")): p.read_bytes()
                 for p in sorted((base / "out").rglob("*.parquet"))}
        engine = sa.create_engine(db_url)
        quarantine = pd.read_sql("select photo_id, day, path, reason, detail from quarantine "
                                 "order by photo_id", engine)
        engine.dispose()
        # The absolute-path photo names its own folder; the rest are relative.
        for column in ("path", "detail"):
            quarantine[column] = quarantine[column].str.replace(str(base), "<base>")
        results[workers] = files, quarantine
    (files_one, q_one), (files_three, q_three) = results[1], results[3]
    assert len(files_one) >= 6 and files_three.keys() == files_one.keys()
    for name, data in files_one.items():
        assert files_three[name] == data, name
    pd.testing.assert_frame_equal(q_three, q_one)


def test_scoring_stats_line_and_shares():
    from models.score import ScoringStats

    stats = ScoringStats(prep_workers=2, device="CPU", precision="bf16", photos=1000,
                         seconds=8.0, model_seconds=6.0, model_waited=2.0, prep_busy=12.0)
    assert stats.line() == ("scored 1,000 photos in 8.0 s (125.0 photos/s, 2 prep workers, "
                            "model on CPU, Keras bf16)")
    assert stats.model_wait_share == pytest.approx(0.25)
    assert stats.prep_wait_share == pytest.approx(0.25)
    assert "model waited for photos 25 %" in stats.line(verbose=True)
    assert "photos waited for the model 25 %" in stats.line(verbose=True)
    # On Ray the stages overlap across days: no shares are measured, so none are printed.
    on_ray = ScoringStats(prep_workers=1, photos=12, seconds=2.0, engine="Ray, 1 model actor")
    assert on_ray.line(verbose=True) == ("scored 12 photos in 2.0 s (6.0 photos/s, 1 prep "
                                         "actor, model on CPU, Keras float32) on Ray, 1 model "
                                         "actor")


def test_more_workers_need_a_detector_that_clones(tmp_path, tiny_model):
    from models.score import score_photos

    class Plain:
        name, confident = "blazeface", 0.75

    with pytest.raises(TypeError, match="clone"):
        list(score_photos([(1, "a.jpg")], tmp_path, tiny_model, Plain(), prep_workers=2))


def test_prep_workers_from_the_environment_and_the_scoring_line(sqlite_url, tmp_path,
                                                                tiny_model_path, monkeypatch):
    """AGESEG_PREP_WORKERS reaches the job; its scoring line says so and parses; -v adds
    where the time went."""
    import re

    from click.testing import CliRunner

    from jobs.cli import cli

    fill_shop(sqlite_url, tmp_path / "photos")
    base = ["--db-url", sqlite_url, "--photo-root", str(tmp_path / "photos"), "--model",
            str(tiny_model_path), "--output-root", str(tmp_path / "m"), "--restricted-root",
            str(tmp_path / "r"), "--lock-dir", str(tmp_path / "l"), "--min-cell", "3"]
    monkeypatch.setenv("AGESEG_PREP_WORKERS", "3")
    result = CliRunner().invoke(cli, [*base, "-v", "nightly", "--date", DAY.isoformat()],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    line = re.search(r"scored ([\d,]+) photos in ([\d.]+) s \(([\d.]+) photos/s, (\d+) prep "
                     r"workers?, model on (CPU|GPU), (Keras|LiteRT) (float32|bf16|float16|int8 "
                     r"weights)\); model waited "
                     r"for photos (\d+) % of the time, photos waited for the model (\d+) %",
                     result.output)
    assert line, result.output
    assert int(line[1].replace(",", "")) == 40 and line[4] == "3"
