"""A generated shop day for end-to-end tests: purchases plus checkout photos of every kind."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from demo.purchases import generate_day
from sql.engine import make_engine
from sql.queries import create_schema, insert_frame
from tests.photos import scene_jpeg, write_bad_photos

DAY = dt.date(2026, 11, 28)


def fill_shop(db_url: str, photo_root: Path, n_receipts: int = 40) -> dict[str, str]:
    """Fill one day: receipts from the demo generator, a photo for most of them, and one
    photo of every bad kind attached to further receipts. Returns {path: expected outcome}."""
    engine = make_engine(db_url)
    create_schema(engine)
    ages = np.linspace(8, 80, n_receipts)
    shoppers = generate_day(engine, DAY, stores=2, receipts_per_store=n_receipts // 2,
                            shopper_ages=ages, seed=3)
    expected = write_bad_photos(photo_root)
    good = [f"day/{i}.jpg" for i in range(n_receipts - len(expected))]
    for i, rel in enumerate(good):
        scene_jpeg(photo_root / rel, seed=i)
        expected[rel] = "ok"
    receipts = shoppers.sort_values("receipt_id")
    rows = [(i + 1, int(r.receipt_id), rel, r.ts)
            for i, (rel, r) in enumerate(zip(expected, receipts.itertuples()))]
    insert_frame(engine, "checkout_photos",
                 pd.DataFrame(rows, columns=["photo_id", "receipt_id", "path", "taken_at"]))
    engine.dispose()
    return expected
