"""Build an embedded demo: one day of a few stores in SQLite, with checkout photos.

Shoppers' faces are public-domain portraits shipped inside installed packages, or, with
``faces_dir``, real labelled faces (e.g. ../shared/faces) so the demo can also measure how
far the scored ages are from the true ones. A few deliberately broken photos show the
quarantine at work.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from demo.purchases import generate_day
from demo.scenes import available_demo_faces, faces_from_dir, make_checkout_scene
from sql.engine import make_engine
from sql.queries import create_schema, insert_frame

PHOTO_RATE = 0.95  # some tills' cameras miss a shopper: those receipts stay "unknown"


@dataclass(frozen=True)
class DemoDay:
    db_url: str
    photo_root: Path
    day: dt.date
    shoppers: pd.DataFrame  # receipt_id, true_age, face (name of the portrait used)


def build_demo(
    workdir: Path,
    day: dt.date,
    *,
    faces_dir: Path | None = None,
    stores: int = 3,
    receipts_per_store: int = 100,
    seed: int = 7,
    on_progress: Callable[[str], None] | None = None,
) -> DemoDay:
    """Create (or refresh) the demo database and photos for ``day`` under ``workdir``.

    `on_progress(message)` hears each step: drawing the photos takes half a minute or more,
    and a command that says nothing that long looks hung."""
    say = on_progress or (lambda _message: None)
    workdir = Path(workdir).resolve()
    photo_root = workdir / "photos"
    db_url = f"sqlite:///{workdir / 'shop.db'}"
    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, day.toordinal()])
    n = stores * receipts_per_store
    if faces_dir is not None:
        faces = faces_from_dir(faces_dir / "labels.csv", faces_dir / "final_files", n, rng)
    else:
        faces = available_demo_faces()

    engine = make_engine(db_url)
    try:
        create_schema(engine)
        shoppers = generate_day(engine, day, stores=stores, receipts_per_store=receipts_per_store,
                                shopper_ages=[age for _, age, _ in faces], seed=seed)
        shoppers["face"] = [faces[i][2] for i in shoppers["shopper_index"]]
        say(f"{len(shoppers)} receipts in {db_url}; drawing their checkout photos ...")
        photos = _write_photos(photo_root, day, shoppers, faces, rng, say)
        _replace_photo_rows(engine, day, photos)
    finally:
        engine.dispose()
    return DemoDay(db_url, photo_root, day, shoppers[["receipt_id", "true_age", "face"]])


def _write_photos(root: Path, day: dt.date, shoppers: pd.DataFrame, faces, rng,
                  say: Callable[[str], None] = lambda _message: None) -> pd.DataFrame:
    folder = root / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in shoppers.itertuples():
        if rng.random() > PHOTO_RATE:
            continue
        rel = f"{day.isoformat()}/r{r.receipt_id}.jpg"
        (root / rel).write_bytes(make_checkout_scene(faces[r.shopper_index][0], rng))
        rows.append((r.receipt_id, r.receipt_id, rel, r.ts))
        if len(rows) % 100 == 0:
            say(f"  {len(rows)} photos of about {round(len(shoppers) * PHOTO_RATE)}")
    photos = pd.DataFrame(rows, columns=["photo_id", "receipt_id", "path", "taken_at"])
    # Two photos the job must quarantine rather than crash on.
    first_id = int(shoppers["receipt_id"].max()) + 1
    broken = folder / "broken.jpg"
    broken.write_bytes(make_checkout_scene(faces[0][0], rng)[:1500])  # cut off mid-scan
    extra = pd.DataFrame({
        "photo_id": [first_id, first_id + 1],
        "receipt_id": [None, None],
        "path": [f"{day.isoformat()}/broken.jpg", f"{day.isoformat()}/deleted.jpg"],
        "taken_at": [shoppers["ts"].iloc[0]] * 2,
    })
    return pd.concat([photos, extra], ignore_index=True)


def _replace_photo_rows(engine, day: dt.date, photos: pd.DataFrame) -> None:
    """Re-running the demo for a day replaces that day's photo rows, never duplicates them."""
    from sql.queries import delete_photos_for_day

    delete_photos_for_day(engine, day)
    insert_frame(engine, "checkout_photos", photos)
