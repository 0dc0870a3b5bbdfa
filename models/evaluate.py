"""Age-model metrics that matter for a checkout: error per age band and per group, not only MAE.

An overall MAE hides what the shop cares about: how often a 13-17 year old is judged old
enough (or a 30+ shopper needlessly flagged) at the "looks under 25" threshold, and whether
the error differs by band, gender, ethnicity or image source. Pure functions over a frame of
`real_age, pred_age[, gender, race, source]`; the plot imports matplotlib only when called.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

AGE_BANDS: list[tuple[int, int | None]] = [
    (0, 12),
    (13, 17),
    (18, 24),
    (25, 34),
    (35, 49),
    (50, 64),
    (65, None),
]
GENDERS = {0: "male", 1: "female"}
RACES = {0: "White", 1: "Black", 2: "Asian", 3: "Indian", 4: "Others"}
CUMULATIVE_SCORE_YEARS = 5


def band_label(band: tuple[int, int | None]) -> str:
    low, high = band
    return f"{low}+" if high is None else f"{low}-{high}"


BAND_LABELS = [band_label(b) for b in AGE_BANDS]


def age_band_labels(ages: pd.Series) -> pd.Series:
    """Band label of each (real) age; whole years count, so 12.9 is still "0-12"."""
    years = np.floor(ages.to_numpy(dtype="float64"))
    edges = [low for low, _ in AGE_BANDS[1:]]
    index = np.searchsorted(edges, years, side="right")
    return pd.Series(np.asarray(BAND_LABELS, dtype=object)[index], index=ages.index)


def _validated(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("real_age", "pred_age") if c not in frame.columns]
    if missing:
        raise ValueError(f"evaluation frame lacks column(s): {', '.join(missing)}")
    if frame.empty:
        raise ValueError("evaluation frame is empty: nothing to evaluate")
    real = pd.to_numeric(frame["real_age"], errors="coerce").astype("float64")
    pred = pd.to_numeric(frame["pred_age"], errors="coerce").astype("float64")
    if pred.isna().any():
        raise ValueError(f"{int(pred.isna().sum())} prediction(s) are NaN or not numbers")
    if not np.isfinite(pred.to_numpy()).all():
        raise ValueError("predictions contain infinite values")
    if real.isna().any():
        raise ValueError(f"{int(real.isna().sum())} real age(s) are NaN or not numbers")
    out = frame.copy()
    out["real_age"] = real
    out["pred_age"] = pred
    out["error"] = pred - real
    return out


def _num(value: float) -> float | None:
    """Plain float for JSON, None instead of NaN."""
    value = float(value)
    return None if math.isnan(value) else value


def _group_stats(errors: pd.Series) -> dict[str, Any]:
    """n, MAE and bias of one group; an empty group keeps its row with nulls."""
    if not len(errors):
        return {"n": 0, "mae": None, "bias": None}
    return {"n": int(len(errors)), "mae": _num(errors.abs().mean()), "bias": _num(errors.mean())}


def _share(mask: pd.Series) -> float | None:
    return float(mask.mean()) if len(mask) else None


def evaluate_ages(frame: pd.DataFrame, threshold: float = 25.0) -> dict[str, Any]:
    """Overall, per-band and per-group errors plus the two threshold flag rates.

    `under18_flagged_at_25`: share of real 13-17 year olds estimated under `threshold`
    (higher is better: they would be asked for ID). `over30_flagged_at_25`: share of real 30+
    shoppers estimated under it (lower is better: needless checks). The key names keep "25"
    for stable reports; `threshold` records the value actually used.
    """
    data = _validated(frame)
    err = data["error"]
    abs_err = err.abs()
    metrics: dict[str, Any] = {
        "n": int(len(data)),
        "mae": float(abs_err.mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "median_abs_error": float(abs_err.median()),
        "bias": float(err.mean()),
        f"cumulative_score_{CUMULATIVE_SCORE_YEARS}": float(
            (abs_err <= CUMULATIVE_SCORE_YEARS).mean()
        ),
        "threshold": float(threshold),
    }

    bands = age_band_labels(data["real_age"])
    metrics["by_band"] = {
        label: _group_stats(err[bands == label]) for label in BAND_LABELS
    }

    years = np.floor(data["real_age"])
    teens = data[(years >= 13) & (years <= 17)]
    over30 = data[years >= 30]
    metrics["under18_flagged_at_25"] = _share(teens["pred_age"] < threshold)
    metrics["over30_flagged_at_25"] = _share(over30["pred_age"] < threshold)
    # The trade-off behind --challenge-age: the estimated-age threshold that would catch
    # 99 % of real 13-17 year olds with this model, and how many 30+ shoppers it then flags.
    metrics["threshold_catching_99pct_13_17"] = None
    metrics["over30_flagged_at_that_threshold"] = None
    if len(teens):
        t99 = float(np.quantile(teens["pred_age"].to_numpy(), 0.99, method="higher"))
        t99 = float(np.nextafter(t99, np.inf))  # strictly above: "under" it flags that teen
        metrics["threshold_catching_99pct_13_17"] = t99
        metrics["over30_flagged_at_that_threshold"] = _share(over30["pred_age"] < t99)

    for column, names, key in (("gender", GENDERS, "by_gender"), ("race", RACES, "by_race")):
        if column in data.columns:
            codes = pd.to_numeric(data[column], errors="coerce")
            metrics[key] = {
                name: _group_stats(err[codes == code])
                for code, name in names.items()
            }
    if "source" in data.columns:
        sources = data["source"].astype("string")
        metrics["by_source"] = {
            str(s): _group_stats(err[sources == s])
            for s in sorted(sources.dropna().unique())
        }
    return metrics


def plot_evaluation(frame: pd.DataFrame, out_png: Path) -> Path:
    """Predicted vs real scatter (with y = x) and residuals per age band, as one PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = _validated(frame)
    fig = Figure(figsize=(12, 5), dpi=100)
    FigureCanvasAgg(fig)
    scatter, boxes = fig.subplots(1, 2)

    top = float(max(data["real_age"].max(), data["pred_age"].max(), 1.0)) * 1.05
    scatter.scatter(data["real_age"], data["pred_age"], s=6, alpha=0.35, edgecolors="none")
    scatter.plot([0, top], [0, top], color="black", linewidth=1, label="y = x")
    scatter.set(xlim=(0, top), ylim=(0, top), xlabel="real age", ylabel="predicted age",
                title=f"Predicted vs real (n={len(data)})")
    scatter.legend(loc="upper left")

    bands = age_band_labels(data["real_age"])
    groups = [(label, data["error"][bands == label].to_numpy()) for label in BAND_LABELS]
    groups = [(label, values) for label, values in groups if len(values)]
    boxes.boxplot([values for _, values in groups], showfliers=False)
    boxes.set_xticks(range(1, len(groups) + 1),
                     [f"{label}\nn={len(values)}" for label, values in groups])
    boxes.axhline(0, color="black", linewidth=1)
    boxes.set(xlabel="real age band", ylabel="predicted - real (years)",
              title="Residual by age band (outliers hidden)")

    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, format="png")
    return out_png


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_report(metrics: dict[str, Any]) -> str:
    """Console table of `evaluate_ages` output."""
    threshold = metrics["threshold"]
    cs_key = f"cumulative_score_{CUMULATIVE_SCORE_YEARS}"
    lines = [
        f"n={metrics['n']}  MAE={_fmt(metrics['mae'])}  RMSE={_fmt(metrics['rmse'])}  "
        f"median|err|={_fmt(metrics['median_abs_error'])}  bias={_fmt(metrics['bias'], 2)}  "
        f"within {CUMULATIVE_SCORE_YEARS}y={_pct(metrics[cs_key])}",
        f"real 13-17 estimated under {threshold:g}: {_pct(metrics['under18_flagged_at_25'])}"
        "  (want high)",
        f"real 30+ estimated under {threshold:g}:   {_pct(metrics['over30_flagged_at_25'])}"
        "  (want low)",
    ]
    t99 = metrics.get("threshold_catching_99pct_13_17")
    if t99 is not None:
        lines.append(f"to catch 99% of 13-17 the threshold would be {t99:.1f}, flagging "
                     f"{_pct(metrics['over30_flagged_at_that_threshold'])} of real 30+")
    sections = [("age band", "by_band"), ("gender", "by_gender"), ("race", "by_race"),
                ("source", "by_source")]
    for title, key in sections:
        table = metrics.get(key)
        if not table:
            continue
        width = max(len(title), *(len(name) for name in table))
        lines += ["", f"{title:<{width}}  {'n':>6}  {'MAE':>6}  {'bias':>6}",
                  f"{'-' * width}  {'-' * 6}  {'-' * 6}  {'-' * 6}"]
        for name, stats in table.items():
            lines.append(
                f"{name:<{width}}  {stats['n']:>6}  {_fmt(stats['mae']):>6}  "
                f"{_fmt(stats.get('bias')):>6}"
            )
    return "\n".join(lines)
