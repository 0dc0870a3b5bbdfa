"""The exploration report on a generated labelled set with planted problems."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from jobs.explore import command
from models.explore import explore, heaping_stats

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OUTPUTS = {"report.md", "summary.json", "age_histogram.png", "faces_by_band.png"}


def _jpeg(size: int, mode: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (size, size) if mode == "L" else (size, size, 3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def labelled(tmp_path: Path) -> tuple[Path, Path]:
    """30 good images (ages 3-61; 27 colour 48 px, 3 grey 32 px), then planted problems.

    Data rows: 2-31 good, 32 corrupt.jpg (truncated: listed as unreadable, not a label
    problem), 33 a missing file, 34 a non-numeric age, 35 a duplicate of img_000.jpg.
    """
    images = tmp_path / "images"
    images.mkdir()
    lines = ["file_name,real_age,gender,race,source"]
    for i in range(30):
        name = f"img_{i:03d}.jpg"
        grey = i % 10 == 9
        (images / name).write_bytes(_jpeg(32 if grey else 48, "L" if grey else "RGB", i))
        lines.append(f"{name},{3 + 2 * i},{i % 2},{i % 5},{'small' if grey else 'big'}")
    good = _jpeg(48, "RGB", 99)
    (images / "corrupt.jpg").write_bytes(good[: len(good) // 2])
    (images / "bad_age.jpg").write_bytes(good)
    lines += [
        "corrupt.jpg,70,0,0,big",  # only 65+ face, and it cannot be decoded
        "missing.jpg,30,0,0,big",
        "bad_age.jpg,thirty,1,1,big",
        "img_000.jpg,40,0,0,big",
    ]
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv, images


def _valid_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 300


def test_report_lists_problems_by_row_and_unreadable_files(labelled, tmp_path: Path) -> None:
    csv, images = labelled
    before = sorted(p.name for p in images.iterdir())
    out = tmp_path / "out"
    report = explore(csv, images, out)

    assert report == out / "report.md"
    assert {p.name for p in out.iterdir()} == OUTPUTS
    assert sorted(p.name for p in images.iterdir()) == before  # nothing written beside data
    for png in ("age_histogram.png", "faces_by_band.png"):
        _valid_png(out / png)

    text = report.read_text()
    assert "34 data rows, 31 usable, 3 left out" in text
    assert "| 33 | missing.jpg | image file missing |" in text
    assert "| 34 | bad_age.jpg | real_age 'thirty' is not a number |" in text
    assert "| 35 | img_000.jpg | duplicate file_name (first on row 2) |" in text
    assert "1 unreadable file(s)" in text and "| corrupt.jpg |" in text
    assert "](age_histogram.png)" in text and "](faces_by_band.png)" in text
    assert "all 31 usable images" in text
    # 31 checked, one fails: 27 colour 48x48 JPEGs and 3 grey 32x32 ones remain.
    assert "| 48x48 | 27 |" in text and "| 32x32 | 3 |" in text
    assert "| RGB | 27 |" in text and "| L | 3 |" in text
    # bands of the 31 usable ages 3,5,...,61 and 70
    assert "| 0-12 | 5 |" in text  # 3 5 7 9 11
    assert "| 13-17 | 3 |" in text  # 13 15 17
    assert "| 65+ | 1 |" in text
    assert "| male |" in text and "| Asian |" in text and "| small |" in text

    facts = json.loads((out / "summary.json").read_text())
    assert (facts["rows"], facts["usable"], facts["problems"]) == (34, 31, 3)
    assert facts["images_unreadable"] == 1
    assert len(facts["summary"]) == 5


def test_sampling_is_stated(labelled, tmp_path: Path) -> None:
    csv, images = labelled
    text = explore(csv, images, tmp_path / "out", sample_size=10).read_text()
    assert "a random sample of 10 of 31 usable images" in text
    facts = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert facts["images_checked"] == 10
    assert sum(facts["sizes"].values()) + facts["images_unreadable"] == 10


def test_heaping_ratio_by_hand() -> None:
    counts = np.full(100, 10)
    counts[30::5] = 30  # every multiple of 5 from 30 on is three times its neighbours
    h = heaping_stats(counts, ages=(20, 80))
    # multiples of 5 in 20-80: 20, 25 at 10, 30..80 (11 ages) at 30; neighbours all 10
    # -> (2*10 + 11*30) / (13*10) = 350 / 130
    assert h["ratio_multiples_of_5"] == pytest.approx(350 / 130)
    # multiples of 10: 20 at 10, 30..80 (6 ages) at 30 -> (10 + 180) / 70
    assert h["ratio_multiples_of_10"] == pytest.approx(190 / 70)
    # Whipple, ages 23-62: 25 at 10 and 30..60 (7 ages) at 30 -> 220 at multiples;
    # all 40 ages sum to 32*10 + 220 = 540 -> 100 * 220 / (540 / 5)
    assert h["whipple_index"] == pytest.approx(100 * 220 / 108)
    by_age = {r["age"]: r["ratio"] for r in h["per_age"]}
    assert by_age[25] == pytest.approx(1.0) and by_age[45] == pytest.approx(3.0)
    assert h["top_spikes"][0]["ratio"] == pytest.approx(3.0)

    flat = heaping_stats(np.full(100, 7))
    assert flat["ratio_multiples_of_5"] == pytest.approx(1.0)
    assert flat["whipple_index"] == pytest.approx(100.0)


def test_command_prints_report_path_and_summary(labelled, tmp_path: Path) -> None:
    csv, images = labelled
    out = tmp_path / "cli_out"
    result = CliRunner().invoke(
        command, ["--labels", str(csv), "--images", str(images), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"report: {out / 'report.md'}"
    assert len(lines) == 6
    assert "34 labelled, 31 usable, 3 with problems" in lines[1]
    assert "1 unreadable" in result.output
    _valid_png(out / "faces_by_band.png")


def test_command_turns_label_errors_into_click_errors(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    result = CliRunner().invoke(
        command,
        ["--labels", str(tmp_path / "nope.csv"), "--images", str(tmp_path / "images"),
         "--out", str(tmp_path / "out")],
    )
    assert result.exit_code == 1
    assert "Error: labels file not found" in result.output
    assert "Traceback" not in result.output


def test_command_refuses_output_inside_source_tree(labelled) -> None:
    csv, images = labelled
    inside = Path(__file__).resolve().parents[1] / "tests" / "explore_output_must_not_exist"
    result = CliRunner().invoke(
        command, ["--labels", str(csv), "--images", str(images), "--out", str(inside)]
    )
    assert result.exit_code == 1
    assert "source tree" in result.output
    assert not inside.exists()


def test_help_ends_with_example() -> None:
    result = CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0
    example = (
        "Example: ageseg explore --labels faces/labels.csv --images faces/final_files "
        "--out var/explore"
    )
    assert f"  {example}" in result.output.splitlines()  # one line, copy-pastable
