"""`ageseg demo` end to end: builds a day, scores it, prints sales by age group."""

from __future__ import annotations

import subprocess

import sqlalchemy as sa
from click.testing import CliRunner

from jobs.cli import cli


def test_demo_builds_scores_and_reruns_cleanly(tmp_path, tiny_model_path):
    args = ["--model", str(tiny_model_path), "demo", "--workdir", str(tmp_path / "demo"),
            "--stores", "1", "--receipts-per-store", "20"]
    for _ in range(2):  # a second run replaces the day instead of duplicating it
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    assert "Share of each age group's spend" in result.output
    # no long silence: each step is announced before it starts
    assert "drawing their checkout photos" in result.output
    assert "the age model loads first" in result.output
    assert "2 quarantined" in result.output  # the demo's broken and deleted photos
    # Most cells of a small day are hidden: the table says so next to it.
    assert "are suppressed" in result.output and "could be shown" in result.output
    # The closing hint runs as printed (there is no `duckdb` command; the package is there).
    hint = result.output.strip().splitlines()[-1].strip()
    ran = subprocess.run(["bash", "-c", hint], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0 and "store_id" in ran.stdout, ran.stderr[-1000:]
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'demo' / 'shop.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from receipts")).scalar() == 20
        photos = conn.execute(sa.text("select count(*) from checkout_photos")).scalar()
    assert 15 <= photos <= 22
    files = list((tmp_path / "demo" / "out" / "marketing" / "sales_by_age_group").rglob("*.*"))
    assert [f.name for f in files] == ["part-0.parquet"]
