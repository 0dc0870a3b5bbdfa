"""The analysts' report: Markdown with PNG charts over a range of days, from marketing tables.

Only the marketing root is read, so the report can be shared as widely as the marketing
tables themselves. Numbers come from published (unsuppressed) cells: a suppressed cell's
revenue is unknown, so shares and totals here are of what could be shown, and the report
says how much was hidden.

The table functions are pure; `write_report` is the only writer (Markdown and PNG files).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analytics.age_groups import UNKNOWN
from analytics.day_tables import AGE_MIX, RECOMMENDATIONS, SALES
from analytics.parquet import OutputError, read_range
from analytics.recommendations import age_order

MAX_STORES_CHARTED = 12  # small multiples beyond this are unreadable; the table has them all
TOP_CATEGORIES = 5


class NoDataError(LookupError):
    """No marketing partitions in the requested range."""


@dataclass(frozen=True)
class ReportData:
    """What the report shows, as plain frames (also handy for tests)."""

    start: dt.date
    end: dt.date
    days: int
    first: dt.date  # the first and last day with data, inside start..end
    last: dt.date
    hidden_cells: int
    cells: int
    mix: pd.DataFrame  # dt, store_name, age_group, revenue, share
    top_categories: pd.DataFrame  # age_group, category, revenue, share, rank
    weekly: pd.DataFrame  # week_start, week_end, days, age_group, revenue_per_day, change
    recommended: pd.DataFrame  # age_group, category, rank, receipts, lift, lift_low
    # Chain-wide over the range, corrected for the model's error (empty before age_mix):
    # age_group, observed_share, est_share, est_share_low, est_share_high
    corrected: pd.DataFrame = field(default_factory=pd.DataFrame)


def report_data(sales: pd.DataFrame, recommendations: pd.DataFrame, start: dt.date,
                end: dt.date, mix: pd.DataFrame | None = None) -> ReportData:
    """Tables of the report from the range's sales_by_age_group, recommendations and
    age_mix rows (each with a `dt` column, as analytics.parquet.read_range returns them)."""
    if sales.empty or "suppressed" not in sales.columns:
        raise NoDataError(f"no sales_by_age_group partitions from {start} to {end}")
    shown = sales.loc[~sales["suppressed"].astype(bool)].copy()
    shown["revenue"] = shown["revenue"].astype(float)
    return ReportData(
        start=start, end=end, days=int(sales["dt"].nunique()),
        first=min(sales["dt"]), last=max(sales["dt"]),
        hidden_cells=int(sales["suppressed"].sum()), cells=len(sales),
        mix=age_mix(shown), top_categories=top_categories(shown),
        weekly=week_over_week(shown, end), recommended=chain_categories(recommendations),
        corrected=corrected_mix(mix if mix is not None else pd.DataFrame()))


def corrected_mix(mix: pd.DataFrame) -> pd.DataFrame:
    """The chain's receipts per age group over the range: the observed share (hard groups)
    beside the corrected share and its 90 % interval. Interval ends are summed over days,
    which is conservative (days' errors partly cancel). Known groups only."""
    columns = ["age_group", "observed_share", "est_share", "est_share_low", "est_share_high"]
    if mix.empty or "scope" not in mix.columns:
        return pd.DataFrame(columns=columns)
    chain = mix[(mix["scope"] == "chain") & (mix["age_group"] != UNKNOWN)
                & ~mix["suppressed"].astype(bool)]
    sums = chain.groupby("age_group", as_index=False)[
        ["receipts", "est_receipts", "est_receipts_low", "est_receipts_high"]].sum()
    total, observed = sums["est_receipts"].sum(), sums["receipts"].sum()
    if total <= 0 or observed <= 0:
        return pd.DataFrame(columns=columns)
    out = pd.DataFrame({"age_group": sums["age_group"],
                        "observed_share": sums["receipts"].astype(float) / observed,
                        "est_share": sums["est_receipts"].astype(float) / total,
                        "est_share_low": sums["est_receipts_low"].astype(float) / total,
                        "est_share_high": sums["est_receipts_high"].astype(float) / total})
    return _by_age(out)


def age_mix(shown: pd.DataFrame) -> pd.DataFrame:
    """Revenue per store, day and age group, and its share of the store's shown revenue."""
    mix = shown.groupby(["dt", "store_name", "age_group"], as_index=False)["revenue"].sum()
    total = mix.groupby(["dt", "store_name"])["revenue"].transform("sum")
    return mix.assign(share=mix["revenue"] / total.where(total > 0))


def top_categories(shown: pd.DataFrame, top: int = TOP_CATEGORIES) -> pd.DataFrame:
    """Each age group's biggest categories by revenue over the range, with their share."""
    spend = shown.groupby(["age_group", "category"], as_index=False)["revenue"].sum()
    spend["share"] = spend["revenue"] / spend.groupby("age_group")["revenue"].transform("sum")
    spend = spend.sort_values(["age_group", "revenue"], ascending=[True, False])
    spend["rank"] = spend.groupby("age_group").cumcount() + 1
    return _by_age(spend[spend["rank"] <= top])


def week_over_week(shown: pd.DataFrame, end: dt.date) -> pd.DataFrame:
    """Revenue per day of each age group in 7-day weeks ending on `end`, and the change
    against the week before (per day, so a partial first week compares fairly)."""
    days_back = shown["dt"].map(lambda d: (end - d).days)
    week = days_back // 7
    frame = shown.assign(week=week)
    per_week = frame.groupby(["week", "age_group"], as_index=False)["revenue"].sum()
    days = frame.groupby("week")["dt"].nunique()
    per_week["days"] = per_week["week"].map(days)
    per_week["revenue_per_day"] = per_week["revenue"] / per_week["days"]
    per_week["week_end"] = per_week["week"].map(lambda w: end - dt.timedelta(days=7 * int(w)))
    per_week["week_start"] = per_week["week_end"] - dt.timedelta(days=6)
    per_week = per_week.sort_values(["age_group", "week"], ascending=[True, False])
    previous = per_week.groupby("age_group")["revenue_per_day"].shift(1)
    per_week["change"] = per_week["revenue_per_day"] / previous - 1
    columns = ["week_start", "week_end", "days", "age_group", "revenue_per_day", "change"]
    return _by_age(per_week[columns])


def chain_categories(recommendations: pd.DataFrame, top: int = 3) -> pd.DataFrame:
    """The last day's chain-wide category recommendations, `top` per age group."""
    columns = ["age_group", "category", "rank", "receipts", "lift", "lift_low"]
    if recommendations.empty or "scope" not in recommendations.columns:
        return pd.DataFrame(columns=columns)
    last = recommendations[recommendations["dt"] == recommendations["dt"].max()]
    # Only what the group buys more of even at the conservative end: a lift_low under 1 does
    # not support "buys more than all shoppers do".
    chain = last[(last["scope"] == "chain") & (last["level"] == "category")
                 & (last["lift_low"] > 1)]
    chain = chain.sort_values(["age_group", "rank"])
    chain = chain[chain.groupby("age_group").cumcount() < top]
    return _by_age(chain[columns])


def write_report(output_root: Path, start: dt.date, end: dt.date, out_dir: Path) -> Path:
    """Read the range's marketing tables, write report.md and its charts into `out_dir`."""
    if end < start:
        raise ValueError(f"the range ends ({end}) before it starts ({start})")
    data = report_data(read_range(output_root, SALES, start, end),
                       read_range(output_root, RECOMMENDATIONS, start, end), start, end,
                       read_range(output_root, AGE_MIX, start, end))
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        charts = {"mix": _chart_mix(data, out_dir / "age_mix.png"),
                  "top": _chart_top(data, out_dir / "top_categories.png"),
                  "weekly": _chart_weekly(data, out_dir / "week_over_week.png")}
        if not data.corrected.empty:
            charts["corrected"] = _chart_corrected(data, out_dir / "corrected_mix.png")
        target = out_dir / "report.md"
        target.write_text(render_markdown(data, {k: p.name for k, p in charts.items()}))
    except OSError as exc:
        raise OutputError(f"cannot write the report to {out_dir}: {exc.strerror or exc}") from exc
    return target


def render_markdown(data: ReportData, charts: dict[str, str]) -> str:
    """The report's text; `charts` maps "mix", "top", "weekly" (and "corrected" where the
    range has age_mix) to PNG file names."""
    mix = data.mix.groupby(["store_name", "age_group"], as_index=False)["revenue"].sum()
    mix["share"] = mix["revenue"] / mix.groupby("store_name")["revenue"].transform("sum")
    store_mix = mix.pivot(index="store_name", columns="age_group", values="share")
    store_mix = store_mix[sorted(store_mix.columns, key=age_order)].mul(100).round(1)
    top = data.top_categories.assign(share=lambda d: (d["share"] * 100).round(1),
                                     revenue=lambda d: d["revenue"].round(2))
    weekly = data.weekly.assign(
        revenue_per_day=lambda d: d["revenue_per_day"].round(2),
        change=lambda d: (d["change"] * 100).round(1))
    asked = ("" if (data.first, data.last) == (data.start, data.end) else
             f" Asked for {data.start} to {data.end}: only these days have data.")
    lines = [
        f"# What each age group buys: {data.first} to {data.last}",
        "",
        f"{data.days} day(s) of `sales_by_age_group`.{asked} {data.hidden_cells} of {data.cells} "
        "cells were suppressed (fewer receipts than the minimum cell size) and are left out, "
        f"so shares are of the revenue that could be shown. `{UNKNOWN}`: receipts without a "
        "photo or a face.",
        "",
        "## Age-group mix per store and day",
        "",
        f"![Share of each store's revenue by age group, per day]({charts['mix']})",
        "",
        "Share of each store's *shown* revenue over the range, by age group (%): the "
        "revenue of suppressed cells is unknown and left out, so this is the share of the "
        "part of each store's revenue that could be shown, not of all of it:",
        "",
        markdown_table(store_mix.reset_index()),
        "",
    ]
    if "corrected" in charts:
        corrected = data.corrected.assign(**{c: (data.corrected[c] * 100).round(1)
                                             for c in data.corrected.columns[1:]})
        lines += [
            "## Who shops, corrected for the model's error",
            "",
            f"![Share of receipts by age group, observed and corrected]({charts['corrected']})",
            "",
            "Chain-wide share of receipts with an age estimate, by age group (%): `observed` "
            "counts each receipt in its estimated group (pulled toward the middle groups by "
            "the model's error); `est` is corrected for that error with the confusion on "
            "the model card (`age_mix.est_share`; a model without one gets the observed "
            "shares, as the nightly log says), with its 90 % interval:",
            "",
            markdown_table(corrected),
            "",
        ]
    lines += [
        "## Top categories per age group",
        "",
        f"![Each age group's top categories by revenue]({charts['top']})",
        "",
        markdown_table(top[["age_group", "rank", "category", "revenue", "share"]].rename(
            columns={"share": "share of group revenue (%)"})),
        "",
    ]
    lines += [
        "What each group buys *more than all shoppers do* (chain-wide, trailing window "
        f"ending {data.last}; only categories whose conservative lift `lift_low`, the one "
        "used for ranking, is above 1):",
        "",
        markdown_table(data.recommended.round({"lift": 2, "lift_low": 2}))
        if not data.recommended.empty else "_(none: no category's conservative lift is above 1)_",
        "",
    ]
    lines += [
        "## Week over week",
        "",
        f"![Revenue per day by age group, per week]({charts['weekly']})",
        "",
        "Revenue per day in 7-day weeks ending on the report's last day; change against the "
        "week before (%):",
        "",
        markdown_table(weekly),
        "",
    ]
    return "\n".join(lines)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table; missing values shown as blanks."""
    if frame.empty:
        return "_(no rows)_"
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _by_age(frame: pd.DataFrame) -> pd.DataFrame:
    order = frame["age_group"].map(age_order)
    return frame.assign(_o=order).sort_values("_o", kind="stable").drop(columns="_o").reset_index(
        drop=True)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _chart_mix(data: ReportData, path: Path) -> Path:
    plt = _pyplot()
    revenue = data.mix.groupby("store_name")["revenue"].sum().sort_values(ascending=False)
    stores = list(revenue.index[:MAX_STORES_CHARTED])
    cols = min(3, max(1, len(stores)))
    rows = max(1, -(-len(stores) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False,
                             sharey=True)
    groups = sorted(data.mix["age_group"].unique(), key=age_order)
    for ax, store in zip(axes.flat, stores, strict=False):
        table = data.mix[data.mix["store_name"] == store].pivot(
            index="dt", columns="age_group", values="share").reindex(columns=groups).fillna(0)
        table.index = [d.strftime("%m-%d") for d in table.index]
        table.mul(100).plot.bar(stacked=True, ax=ax, width=0.85, legend=False, colormap="viridis")
        ax.set_title(store)
        ax.set_ylabel("% of revenue")
        ax.tick_params(axis="x", labelsize=7)
    for ax in list(axes.flat)[len(stores):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(groups), title="age group")
    fig.tight_layout(rect=(0, 0.14 / rows, 1, 1))
    return _save(fig, path, plt)


def _chart_corrected(data: ReportData, path: Path) -> Path:
    plt = _pyplot()
    frame = data.corrected
    fig, ax = plt.subplots(figsize=(8, 4))
    x = range(len(frame))
    ax.bar([i - 0.2 for i in x], frame["observed_share"] * 100, width=0.4,
           color="tab:gray", label="observed (estimated group)")
    est = frame["est_share"] * 100
    errors = [est - frame["est_share_low"] * 100, frame["est_share_high"] * 100 - est]
    ax.bar([i + 0.2 for i in x], est, width=0.4, color="tab:blue", yerr=errors, capsize=3,
           label="corrected, 90 % interval")
    ax.set_xticks(list(x), frame["age_group"])
    ax.set_xlabel("age group")
    ax.set_ylabel("% of receipts")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path, plt)


def _chart_top(data: ReportData, path: Path) -> Path:
    plt = _pyplot()
    groups = sorted(data.top_categories["age_group"].unique(), key=age_order)
    cols = min(4, max(1, len(groups)))
    rows = max(1, -(-len(groups) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, group in zip(axes.flat, groups, strict=False):
        part = data.top_categories[data.top_categories["age_group"] == group].iloc[::-1]
        ax.barh(part["category"], part["share"] * 100, color="tab:blue")
        ax.set_title(group)
        ax.set_xlabel("% of group revenue")
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path, plt)


def _chart_weekly(data: ReportData, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for group in sorted(data.weekly["age_group"].unique(), key=age_order):
        part = data.weekly[data.weekly["age_group"] == group].sort_values("week_end")
        ax.plot(part["week_end"], part["revenue_per_day"], marker="o", label=group)
    ax.set_xlim(*week_axis_limits(data.weekly["week_end"]))
    ax.set_xlabel("week ending")
    ax.set_ylabel("revenue per day")
    ax.legend(title="age group", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return _save(fig, path, plt)


def week_axis_limits(week_ends: pd.Series) -> tuple[dt.date, dt.date]:
    """Half a week either side of the data: with one week alone, matplotlib's own limits
    span years (2025 to 2029 for a one-day report)."""
    half = dt.timedelta(days=4)
    return min(week_ends) - half, max(week_ends) + half


def _save(fig, path: Path, plt) -> Path:
    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
