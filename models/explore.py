"""Look at a labelled face set before training on it: counts, problems, age heaping, images.

Writes `report.md` plus PNGs (and `summary.json`) into a folder the user chooses. The face
grid is cut from the data set itself, whose licence forbids committing it, so the output
folder may not sit inside this source tree (except the git-ignored `var/`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from models.evaluate import BAND_LABELS, GENDERS, RACES, age_band_labels
from models.labels import Labels, load_labels

SAMPLE_SIZE = 2000
FACES_PER_BAND = 8
THUMB_PX = 64
HEAPING_AGES = (20, 80)  # adult range where rounding of reported ages shows
SPIKE_MIN_NEIGHBOURS = 5.0  # ignore spikes over near-empty ages
TOP_SPIKES = 6
MAX_LISTED = 200
REPORT_NAME = "report.md"
SUMMARY_NAME = "summary.json"
HISTOGRAM_NAME = "age_histogram.png"
GRID_NAME = "faces_by_band.png"
_REPO_ROOT = Path(__file__).resolve().parents[1]


class ExploreError(Exception):
    """The exploration cannot be written where asked."""


@dataclass(frozen=True)
class ImageScan:
    """What a sample of image files looks like and which of them fail to decode."""

    checked: int
    total: int
    sizes: pd.Series  # "WxH" -> count
    modes: pd.Series  # PIL mode -> count
    formats: pd.Series  # PIL format -> count
    sizes_by_source: pd.DataFrame | None
    unreadable: list[tuple[str, str]]  # (file_name, error)


def explore(labels_csv: Path, images_dir: Path, out_dir: Path, *,
            sample_size: int = SAMPLE_SIZE, faces_per_band: int = FACES_PER_BAND,
            seed: int = 0) -> Path:
    """Write the exploration report and its charts into `out_dir`; return the report path.

    Raises `LabelsError` when the labels file or image folder cannot be used at all and
    `ExploreError` when `out_dir` is inside the source tree.
    """
    out_dir = Path(out_dir)
    _refuse_source_tree(out_dir)
    labels = load_labels(Path(labels_csv), Path(images_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    frame = labels.frame

    ages = np.floor(frame["real_age"].to_numpy(dtype="float64")).astype(int)
    counts = np.bincount(ages, minlength=max(HEAPING_AGES[1] + 3, 1))
    heaping = heaping_stats(counts)
    bands = band_counts(frame)
    scan = scan_images(frame, sample_size, rng)
    plot_age_histogram(counts, heaping, out_dir / HISTOGRAM_NAME)
    plot_face_grid(frame, faces_per_band, rng, out_dir / GRID_NAME)

    facts = _facts(labels, ages, heaping, bands, scan)
    report = out_dir / REPORT_NAME
    report.write_text(
        _report_markdown(labels, Path(labels_csv), Path(images_dir), ages, heaping, bands,
                         scan, facts),
        encoding="utf-8",
    )
    (out_dir / SUMMARY_NAME).write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    return report


def summary_lines(report: Path) -> list[str]:
    """The five summary lines written beside a report (for the console)."""
    facts = json.loads((Path(report).parent / SUMMARY_NAME).read_text(encoding="utf-8"))
    return list(facts["summary"])


def _refuse_source_tree(out_dir: Path) -> None:
    if not (_REPO_ROOT / "pyproject.toml").is_file():
        return  # installed package: no source tree to protect
    target = out_dir.resolve()
    if target.is_relative_to(_REPO_ROOT) and not target.is_relative_to(_REPO_ROOT / "var"):
        raise ExploreError(
            f"refusing to write face images into the source tree ({out_dir}); "
            "choose a folder outside it or under var/"
        )


def heaping_stats(counts: np.ndarray, ages: tuple[int, int] = HEAPING_AGES) -> dict[str, Any]:
    """How much more often ages that are multiples of 5 occur than the ages next to them.

    For each multiple m in `ages` the neighbours are m-2, m-1, m+1, m+2. A ratio of 1 means
    no heaping; 2 means round ages are twice as common as their neighbours. Also the
    Whipple index (ages 23-62; 100 = none, 500 = every age a multiple of 5), and the ages
    of any value that stand out most from their neighbours (e.g. a default age in the labels).
    """
    counts = np.asarray(counts, dtype="float64")
    padded = np.zeros(max(len(counts), ages[1] + 3, 63))
    padded[: len(counts)] = counts
    low, high = ages
    per_age = []
    for m in range(5, min(len(counts) + 2, 100), 5):
        neighbours = padded[[m - 2, m - 1, m + 1, m + 2]].mean()
        per_age.append({
            "age": m,
            "count": int(padded[m]),
            "neighbour_mean": float(neighbours),
            "ratio": float(padded[m] / neighbours) if neighbours > 0 else None,
        })

    def ratio(step: int, skip: int | None = None) -> float | None:
        rows = [r for r in per_age if low <= r["age"] <= high and r["age"] % step == 0
                and (skip is None or r["age"] % skip)]
        base = sum(r["neighbour_mean"] for r in rows)
        return sum(r["count"] for r in rows) / base if base > 0 else None

    spikes = []
    for age in range(2, len(counts) - 2):
        neighbours = padded[[age - 2, age - 1, age + 1, age + 2]].mean()
        if neighbours >= SPIKE_MIN_NEIGHBOURS:
            spikes.append({"age": age, "count": int(padded[age]),
                           "neighbour_mean": float(neighbours),
                           "ratio": float(padded[age] / neighbours)})
    spikes.sort(key=lambda r: -r["ratio"])

    whipple_base = padded[23:63].sum() / 5
    return {
        "ages": list(ages),
        "ratio_multiples_of_5": ratio(5),
        "ratio_multiples_of_10": ratio(10),
        "ratio_multiples_of_5_not_10": ratio(5, skip=10),
        "whipple_index": float(100 * padded[25:61:5].sum() / whipple_base)
        if whipple_base > 0 else None,
        "per_age": per_age,
        "top_spikes": spikes[:TOP_SPIKES],
    }


def band_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows per age band (all bands listed, empty ones with 0)."""
    labels = age_band_labels(frame["real_age"]) if len(frame) else pd.Series(dtype=object)
    n = labels.value_counts().reindex(BAND_LABELS, fill_value=0).astype(int)
    share = n / n.sum() if n.sum() else n.astype(float)
    return pd.DataFrame({"band": BAND_LABELS, "rows": n.to_numpy(), "share": share.to_numpy()})


def scan_images(frame: pd.DataFrame, sample_size: int, rng: np.random.Generator) -> ImageScan:
    """Header facts (size, mode, format) of at most `sample_size` images, each fully decoded
    once so corrupt or truncated files show up."""
    total = len(frame)
    pick = np.sort(rng.choice(total, size=min(sample_size, total), replace=False))
    sample = frame.iloc[pick]
    records: list[tuple[str, str, str, str | None]] = []
    unreadable: list[tuple[str, str]] = []
    sources = sample["source"] if "source" in sample.columns else [None] * len(sample)
    for name, path, source in zip(sample["file_name"], sample["path"], sources, strict=True):
        try:
            with Image.open(path) as image:
                size, mode, fmt = f"{image.width}x{image.height}", image.mode, image.format
                image.load()
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            unreadable.append((name, f"{type(exc).__name__}: {exc}"))
            continue
        records.append((size, mode, str(fmt), source))
    found = pd.DataFrame(records, columns=["size", "mode", "format", "source"])
    by_source = None
    if "source" in frame.columns and len(found):
        by_source = pd.crosstab(found["source"].fillna("unknown"), found["size"])
    return ImageScan(
        checked=len(sample),
        total=total,
        sizes=found["size"].value_counts(),
        modes=found["mode"].value_counts(),
        formats=found["format"].value_counts(),
        sizes_by_source=by_source,
        unreadable=unreadable,
    )


def _group_table(frame: pd.DataFrame, column: str) -> pd.DataFrame | None:
    """Rows, share and median age per value of a column (codes named, blanks 'unknown')."""
    if column not in frame.columns:
        return None
    names = {"gender": GENDERS, "race": RACES}.get(column)
    values = frame[column]
    if names is not None:
        values = values.map(lambda v: "unknown" if pd.isna(v) else names.get(int(v), f"code {v}"))
    else:
        values = values.astype("string").replace("", pd.NA).fillna("unknown")
    grouped = frame.groupby(values.to_numpy(), sort=True)["real_age"]
    table = pd.DataFrame({"rows": grouped.size(), "median_age": grouped.median()})
    table["share"] = table["rows"] / table["rows"].sum()
    order = [n for n in (names or {}).values() if n in table.index]
    return table.loc[order + [i for i in table.index if i not in order]]


def plot_age_histogram(counts: np.ndarray, heaping: dict[str, Any], out_png: Path) -> Path:
    """1-year bars, multiples of 5 and 10 coloured so heaping at round ages stands out."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    fig = Figure(figsize=(16, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ages = np.arange(len(counts))
    colours = np.where(ages % 10 == 0, "#b2182b", np.where(ages % 5 == 0, "#ef8a62", "#67a9cf"))
    ax.bar(ages, counts, width=1.0, color=colours, edgecolor="white", linewidth=0.3)
    ax.set_xlim(-0.5, max(len(counts), 20) - 0.5)
    ax.set_xticks(range(0, max(len(counts), 20), 5))
    ax.set(xlabel="real age (1-year bins)", ylabel="images")
    r5, r10 = heaping["ratio_multiples_of_5"], heaping["ratio_multiples_of_10"]
    low, high = heaping["ages"]
    title = "Age distribution"
    if r5 is not None:
        title += (f": ages {low}-{high} at multiples of 5 are {r5:.2f}x their neighbours "
                  f"(multiples of 10: {r10:.2f}x)")
    ax.set_title(title)
    ax.legend(handles=[Patch(color="#b2182b", label="multiple of 10"),
                       Patch(color="#ef8a62", label="multiple of 5"),
                       Patch(color="#67a9cf", label="other ages")], loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, format="png")
    return out_png


def _thumbnail(path: str) -> np.ndarray | None:
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            return np.asarray(ImageOps.fit(image, (THUMB_PX, THUMB_PX)))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def plot_face_grid(frame: pd.DataFrame, per_band: int, rng: np.random.Generator,
                   out_png: Path) -> Path:
    """A row of randomly chosen faces per age band, age above each, read in memory."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bands = age_band_labels(frame["real_age"]) if len(frame) else pd.Series(dtype=object)
    cols = max(per_band, 1)
    fig = Figure(figsize=(1.3 * cols + 1.2, 1.45 * len(BAND_LABELS)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(BAND_LABELS), cols, squeeze=False)
    for r, label in enumerate(BAND_LABELS):
        members = frame[(bands == label).to_numpy()]
        order = rng.permutation(len(members))
        shown = 0
        for i in order:
            if shown == cols:
                break
            thumb = _thumbnail(members["path"].iloc[i])
            if thumb is None:
                continue
            ax = axes[r, shown]
            ax.imshow(thumb)
            ax.set_title(f"{members['real_age'].iloc[i]:g}", fontsize=8, pad=2)
            shown += 1
        for c in range(cols):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if c >= shown:
                axes[r, c].set_frame_on(False)
        axes[r, 0].set_ylabel(f"{label}\nn={len(members)}", rotation=0, ha="right",
                              va="center", fontsize=9)
    fig.suptitle("Sample faces per age band (not for the repository: dataset licence)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, format="png")
    return out_png


def _md_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _indexed_rows(table: pd.DataFrame) -> list[list[Any]]:
    return [[i, *row] for i, row in zip(table.index, table.to_numpy().tolist(), strict=True)]


def _whole(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _facts(labels: Labels, ages: np.ndarray, heaping: dict[str, Any], bands: pd.DataFrame,
           scan: ImageScan) -> dict[str, Any]:
    usable = len(labels.frame)
    rows = usable + len(labels.problems)
    facts: dict[str, Any] = {
        "rows": rows,
        "usable": usable,
        "problems": len(labels.problems),
        "age_mean": float(ages.mean()) if usable else None,
        "age_median": float(np.median(ages)) if usable else None,
        "age_min": int(ages.min()) if usable else None,
        "age_max": int(ages.max()) if usable else None,
        "heaping_ratio_5": heaping["ratio_multiples_of_5"],
        "heaping_ratio_10": heaping["ratio_multiples_of_10"],
        "whipple_index": heaping["whipple_index"],
        "bands": dict(zip(bands["band"], bands["rows"].astype(int).tolist(), strict=True)),
        "images_checked": scan.checked,
        "images_unreadable": len(scan.unreadable),
        "sizes": {k: int(v) for k, v in scan.sizes.items()},
        "modes": {k: int(v) for k, v in scan.modes.items()},
    }
    checked = max(scan.checked, 1)
    sizes = ", ".join(f"{k} {_pct(v / checked)}" for k, v in scan.sizes.head(3).items())
    largest = bands.loc[bands["rows"].idxmax()] if usable else None
    smallest = bands.loc[bands["rows"].idxmin()] if usable else None
    facts["summary"] = [
        f"rows: {rows} labelled, {usable} usable, {len(labels.problems)} with problems",
        (f"ages: mean {facts['age_mean']:.1f}, median {facts['age_median']:g}, "
         f"range {facts['age_min']}-{facts['age_max']}") if usable else "ages: no usable rows",
        (f"heaping: ages {heaping['ages'][0]}-{heaping['ages'][1]} at multiples of 5 are "
         f"{_ratio(heaping['ratio_multiples_of_5'])}x their neighbours (multiples of 10: "
         f"{_ratio(heaping['ratio_multiples_of_10'])}x, Whipple "
         f"{_whole(heaping['whipple_index'])})"),
        (f"images: {scan.checked} of {scan.total} checked, {len(scan.unreadable)} unreadable; "
         f"sizes {sizes or '-'}; modes {', '.join(scan.modes.index) or '-'}"),
        (f"bands: largest {largest['band']} ({_pct(largest['share'])}), smallest "
         f"{smallest['band']} ({_pct(smallest['share'])})") if usable else "bands: empty",
    ]
    return facts


def _report_markdown(labels: Labels, labels_csv: Path, images_dir: Path, ages: np.ndarray,
                     heaping: dict[str, Any], bands: pd.DataFrame, scan: ImageScan,
                     facts: dict[str, Any]) -> str:
    frame = labels.frame
    out: list[str] = [
        "# Training data exploration",
        "",
        f"Labels: `{labels_csv}`  ",
        f"Images: `{images_dir}`",
        "",
        "## Summary",
        "",
        *[f"- {line}" for line in facts["summary"]],
        "",
        "## Rows and problems",
        "",
        f"{facts['rows']} data rows, {facts['usable']} usable, "
        f"{facts['problems']} left out. Row numbers are as a spreadsheet shows them "
        "(the header is row 1).",
        "",
    ]
    if labels.problems:
        shown = labels.problems[:MAX_LISTED]
        out.append(_md_table(["row", "file", "problem"],
                             [[p.row, p.file_name or "?", p.reason] for p in shown]))
        if len(labels.problems) > MAX_LISTED:
            out.append(f"\n... and {len(labels.problems) - MAX_LISTED} more.")
    else:
        out.append("No problem rows.")

    low, high = heaping["ages"]
    out += ["", "## Ages", "", f"![Age histogram, 1-year bins]({HISTOGRAM_NAME})", ""]
    if len(ages):
        out.append(f"Mean {ages.mean():.1f}, median {np.median(ages):g}, "
                   f"range {ages.min()}-{ages.max()} (whole years).")
    out += [
        "",
        "### Heaping at round ages",
        "",
        f"Ratio of the count at each multiple of 5 to the mean count of its neighbours "
        f"(age -2, -1, +1, +2); summed over ages {low}-{high}. 1.00 means no heaping.",
        "",
        _md_table(["measure", "value"], [
            [f"multiples of 5, ages {low}-{high}", _ratio(heaping["ratio_multiples_of_5"])],
            [f"multiples of 10, ages {low}-{high}", _ratio(heaping["ratio_multiples_of_10"])],
            ["multiples of 5 but not 10", _ratio(heaping["ratio_multiples_of_5_not_10"])],
            ["Whipple index, ages 23-62 (100 none, 500 all)", _whole(heaping["whipple_index"])],
        ]),
        "",
        _md_table(["age", "count", "neighbour mean", "ratio"], [
            [r["age"], r["count"], f"{r['neighbour_mean']:.1f}", _ratio(r["ratio"])]
            for r in heaping["per_age"]
        ]),
        "",
        "Single ages that stand out most from their neighbours, round or not "
        "(a spike at a non-round age can be a default value in the labels):",
        "",
        _md_table(["age", "count", "neighbour mean", "ratio"], [
            [r["age"], r["count"], f"{r['neighbour_mean']:.1f}", _ratio(r["ratio"])]
            for r in heaping["top_spikes"]
        ]),
        "",
        "## Age bands",
        "",
        _md_table(["band", "rows", "share"],
                  [[b, n, _pct(s)] for b, n, s in bands.itertuples(index=False)]),
        "",
        "## Sample faces",
        "",
        f"![Sample faces per age band]({GRID_NAME})",
        "",
        "Cut from the data set itself: keep this folder out of the repository (licence).",
        "",
        "## Images",
        "",
    ]
    sampled = (f"a random sample of {scan.checked} of {scan.total} usable images"
               if scan.checked < scan.total else f"all {scan.total} usable images")
    out += [
        f"Sizes, colour modes and formats from {sampled}; each was fully decoded once.",
        "",
        _md_table(["size", "images", "share"],
                  [[k, v, _pct(v / max(scan.checked, 1))] for k, v in scan.sizes.items()]),
        "",
        _md_table(["colour mode", "images"], [[k, v] for k, v in scan.modes.items()]),
        "",
        _md_table(["format", "images"], [[k, v] for k, v in scan.formats.items()]),
        "",
    ]
    if scan.sizes_by_source is not None:
        table = scan.sizes_by_source
        out += ["Sizes by source:", "",
                _md_table(["source", *table.columns],
                          _indexed_rows(table)),
                ""]
    if scan.unreadable:
        out += [f"{len(scan.unreadable)} unreadable file(s):", "",
                _md_table(["file", "error"], [list(u) for u in scan.unreadable[:MAX_LISTED]]),
                ""]
    else:
        out += ["No unreadable files among those checked.", ""]

    for title, column in (("Gender", "gender"), ("Race", "race"), ("Source", "source")):
        table = _group_table(frame, column)
        if table is None:
            continue
        out += [f"## {title}", "",
                _md_table([column, "rows", "share", "median age"],
                          [[i, int(r.rows), _pct(r.share), f"{r.median_age:g}"]
                           for i, r in table.iterrows()]),
                ""]
    if "source" in frame.columns and len(frame):
        cross = pd.crosstab(frame["source"].astype("string").fillna("unknown"),
                            age_band_labels(frame["real_age"])).reindex(
            columns=BAND_LABELS, fill_value=0)
        out += ["Rows per source and age band:", "",
                _md_table(["source", *BAND_LABELS],
                          _indexed_rows(cross)),
                ""]
    return "\n".join(out)
