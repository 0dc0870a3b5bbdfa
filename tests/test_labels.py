"""load_labels reports every bad row by number; split_labels is stable and disjoint."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from models.labels import LabelsError, load_labels, split_labels


def _write(tmp_path: Path, rows: list[str], files: list[str],
           header: str = "file_name,real_age,gender,race,source") -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    for name in files:
        (images / name).write_bytes(b"not read by load_labels")
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join([header, *rows]) + "\n")
    return csv, images


@pytest.fixture
def messy(tmp_path: Path) -> tuple[Path, Path]:
    rows = [
        "a.jpg,24,0,3,s1",  # row 2 ok
        "b.jpg,0,1,,s1",  # row 3 ok: age 0 allowed, race blank
        "gone.jpg,30,0,0,s1",  # row 4 image missing
        "c.jpg,abc,0,0,s1",  # row 5 not a number
        "d.jpg,-1,0,0,s2",  # row 6 negative
        "e.jpg,117,0,0,s2",  # row 7 above 116
        "a.jpg,25,0,3,s1",  # row 8 duplicate of row 2
        "f.jpg,116,1,4,s2",  # row 9 ok: the oldest allowed
        " g.jpg , 7.5 ,1,2,s2",  # row 10 ok: spaces stripped, fractional age
        ",40,0,0,s1",  # row 11 empty name
    ]
    return _write(tmp_path, rows, ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg",
                                   "g.jpg"])


def test_problems_are_reported_with_row_numbers(messy) -> None:
    labels = load_labels(*messy)
    got = {(p.row, p.file_name): p.reason for p in labels.problems}
    assert got == {
        (4, "gone.jpg"): "image file missing",
        (5, "c.jpg"): "real_age 'abc' is not a number",
        (6, "d.jpg"): "real_age -1 is outside 0-116",
        (7, "e.jpg"): "real_age 117 is outside 0-116",
        (8, "a.jpg"): "duplicate file_name (first on row 2)",
        (11, ""): "empty file_name",
    }
    assert [p.row for p in labels.problems] == [4, 5, 6, 7, 8, 11]


def test_clean_frame_keeps_good_rows_typed(messy) -> None:
    csv, images = messy
    frame = load_labels(csv, images).frame
    assert list(frame["file_name"]) == ["a.jpg", "b.jpg", "f.jpg", "g.jpg"]
    assert list(frame["real_age"]) == [24.0, 0.0, 116.0, 7.5]
    assert frame["real_age"].dtype == "float32"
    assert list(frame["gender"]) == [0, 1, 1, 1]
    assert frame["race"].isna().tolist() == [False, True, False, False]
    assert frame.loc[0, "race"] == 3
    assert frame.loc[0, "path"] == str(images / "a.jpg")
    assert list(frame.index) == [0, 1, 2, 3]


def test_strict_raises_naming_rows(messy) -> None:
    with pytest.raises(LabelsError) as info:
        load_labels(*messy, strict=True)
    message = str(info.value)
    assert message.startswith("6 bad label row(s) in ")
    for text in ("row 4 (gone.jpg): image file missing", "row 5 (c.jpg)", "row 6 (d.jpg)",
                 "row 7 (e.jpg)", "row 8 (a.jpg): duplicate file_name (first on row 2)",
                 "row 11 (?): empty file_name"):
        assert text in message


def test_strict_passes_clean_file(tmp_path: Path) -> None:
    csv, images = _write(tmp_path, ["x.jpg,5", "y.jpg,60"], ["x.jpg", "y.jpg"],
                         header="file_name,real_age")
    labels = load_labels(csv, images, strict=True)
    assert labels.problems == []
    assert list(labels.frame.columns) == ["file_name", "real_age", "path"]


def test_describe_problems_truncates(tmp_path: Path) -> None:
    rows = [f"m{i}.jpg,30" for i in range(15)]
    csv, images = _write(tmp_path, rows, [], header="file_name,real_age")
    labels = load_labels(csv, images)
    text = labels.describe_problems(limit=10)
    assert text.splitlines()[0] == "row 2 (m0.jpg): image file missing"
    assert text.splitlines()[-1] == "... and 5 more"
    assert len(text.splitlines()) == 11


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("no_csv", "labels file not found"),
        ("no_dir", "image folder not found"),
        ("no_age_column", "lacks column(s): real_age"),
    ],
)
def test_unusable_inputs_raise(tmp_path: Path, setup: str, message: str) -> None:
    csv, images = _write(tmp_path, ["a.jpg,3"], ["a.jpg"], header="file_name,real_age")
    if setup == "no_csv":
        csv = tmp_path / "nope.csv"
    elif setup == "no_dir":
        images = tmp_path / "no_such_dir"
    else:
        csv.write_text("file_name,age\na.jpg,3\n")
    with pytest.raises(LabelsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_labels(csv, images)


def _names(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"file_name": [f"{i:06d}.jpg" for i in range(start, start + n)],
                         "real_age": 30.0})


def _assignment(parts: dict[str, pd.DataFrame]) -> dict[str, str]:
    return {name: split for split, part in parts.items() for name in part["file_name"]}


def test_split_is_disjoint_complete_and_roughly_sized() -> None:
    frame = _names(2000)
    parts = split_labels(frame, seed=1337, val_frac=0.1, test_frac=0.15)
    sizes = {k: len(v) for k, v in parts.items()}
    assert sum(sizes.values()) == 2000
    sets = {k: set(v["file_name"]) for k, v in parts.items()}
    assert not sets["train"] & sets["val"]
    assert not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    # binomial sd for n=2000: val ~ 13.4, test ~ 16: allow about 4 sd
    assert 145 <= sizes["val"] <= 255
    assert 236 <= sizes["test"] <= 364
    assert 1380 <= sizes["train"] <= 1620
    assert all(list(p.index) == list(range(len(p))) for p in parts.values())


def test_split_is_stable_and_unchanged_when_rows_are_added() -> None:
    frame = _names(2000)
    first = _assignment(split_labels(frame))
    assert _assignment(split_labels(frame)) == first
    # reversed order: same assignment (depends on the name only)
    assert _assignment(split_labels(frame.iloc[::-1])) == first
    grown = pd.concat([frame, _names(1, start=5000)], ignore_index=True)
    second = _assignment(split_labels(grown))
    assert {k: v for k, v in second.items() if k != "005000.jpg"} == first
    # another seed gives another split
    other = _assignment(split_labels(frame, seed=7))
    assert sum(other[k] != first[k] for k in first) > 200


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.1), (0.5, 0.5), (0.1, 1.0)])
def test_split_rejects_bad_fractions(val: float, test: float) -> None:
    with pytest.raises(ValueError, match="val_frac and test_frac"):
        split_labels(_names(10), val_frac=val, test_frac=test)


def test_check_images_reports_corrupt_files_by_row(tmp_path):
    from models.labels import LabelsError, load_labels
    from tests.faces_data import write_labelled_faces

    csv = write_labelled_faces(tmp_path, n=6)
    good = (tmp_path / "images" / "00001.jpg").read_bytes()
    (tmp_path / "images" / "00002.jpg").write_bytes(good[: len(good) // 3])  # truncated
    (tmp_path / "images" / "00004.jpg").write_text("not an image")
    loaded = load_labels(csv, tmp_path / "images", check_images=True)
    assert [(p.row, p.file_name) for p in loaded.problems] == [(4, "00002.jpg"),
                                                               (6, "00004.jpg")]
    assert all("does not decode" in p.reason for p in loaded.problems)
    assert len(loaded.frame) == 4
    assert len(load_labels(csv, tmp_path / "images").frame) == 6  # unchecked: only presence
    with pytest.raises(LabelsError, match="row 4"):
        load_labels(csv, tmp_path / "images", strict=True, check_images=True)
