"""Generated days for the rescore tests: purchases for each day, a checkout photo for most
receipts, every bad kind of photo on the first day, and a day whose shoppers left no photo.
Also a slow scorer for Ray workers to import (as `tests.ray_data`) in the worker-kill test."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from demo.purchases import generate_day
from sql.engine import make_engine
from sql.queries import create_schema, insert_frame
from tests.photos import scene_jpeg, write_bad_photos


def fill_days(db_url: str, photo_root: Path, days: Sequence[dt.date], receipts: int = 14,
              no_photos: Sequence[dt.date] = ()) -> int:
    """Fill `days` (receipts each; days in `no_photos` get receipts but no photo rows);
    returns the number of photo rows."""
    engine = make_engine(db_url)
    create_schema(engine)
    bad = write_bad_photos(photo_root)
    rows = []
    for n, day in enumerate(days):
        count = receipts + (len(bad) + 1 if n == 0 else 0)
        shoppers = generate_day(engine, day, stores=2, receipts_per_store=count // 2,
                                shopper_ages=np.linspace(8, 80, count), seed=3 + n)
        if day in no_photos:
            continue
        paths = [*bad] if n == 0 else []
        while len(paths) < len(shoppers) - 1:  # one receipt of the day without a photo
            rel = f"{day}/{len(paths)}.jpg"
            scene_jpeg(photo_root / rel, seed=n * 100 + len(paths))
            paths.append(rel)
        for rel, r in zip(paths, shoppers.sort_values("receipt_id").itertuples()):
            rows.append((len(rows) + 1, int(r.receipt_id), rel, r.ts))
    insert_frame(engine, "checkout_photos",
                 pd.DataFrame(rows, columns=["photo_id", "receipt_id", "path", "taken_at"]))
    engine.dispose()
    return len(rows)


class SlowScorer:
    """PhotoScorer that notes its pid and every finished batch in trace.txt beside the
    output roots, and takes a moment per batch, so that a test can kill its process while
    it is working."""

    def __init__(self, settings):
        from jobs.ray_engine import PhotoScorer

        self.scorer = PhotoScorer(settings)
        self.trace = Path(settings.output_root).parent / "trace.txt"
        self._note("start")

    def __call__(self, batch):
        time.sleep(1.0)
        out = self.scorer(batch)
        self._note("batch")
        return out

    def _note(self, what: str) -> None:
        self.trace.parent.mkdir(parents=True, exist_ok=True)
        with open(self.trace, "a") as f:
            f.write(f"{what} {os.getpid()}\n")
