"""How likely a shopper is under the challenge age, from the model's own age distribution.

The dex head outputs a probability for each whole-year age, so P(age < 25) for one face is a
sum over its distribution, and it already knows that a blurry or ambiguous face is less sure
than a clear one. As trained, that distribution is too narrow (it learned to match a
Gaussian of 2.5 years around each label, while the real error is about 5.5 years), so
probabilities read from it are overconfident. Temperature scaling fixes that with one
number fitted on validation faces: p(a) ** (1 / T), renormalised, with T chosen to make
the true ages most likely. It keeps the ranking of faces and the estimate itself; a T above
1 widens the distribution.

A model may also carry its own P(age < 25) output (models/build.py), made for the decision;
it is calibrated the same way with a temperature on its logit, and the card says which of
the two the operating point reads (`calibration.source`).

The compliance rule built on it: flag a sale when P(under the challenge age) >= p, with p
the operating point chosen on validation faces (`choose_operating_point`) and written on
the model card. Pure functions over arrays; plots import matplotlib only when called.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

TEMPERATURES = np.exp(np.linspace(math.log(0.5), math.log(12.0), 121))
LOGIT_TEMPERATURES = np.exp(np.linspace(math.log(0.25), math.log(8.0), 141))
CALIBRATION_BINS = 10
MAX_ADULT_FLAG_RATE = 0.10  # the operating point may flag at most this share of real 30+
PROBABILITY_GRID = np.round(np.concatenate([np.arange(0.005, 0.05, 0.005),
                                            np.arange(0.05, 1.0, 0.01)]), 3)


def p_under(probs: np.ndarray, age: float) -> np.ndarray:
    """P(true age < `age`) per row of whole-year distributions (N, K): bin a covers
    [a, a + 1), so a fractional `age` takes that share of its bin."""
    grid = np.arange(probs.shape[-1], dtype=np.float64)
    weight = np.clip(age - grid, 0.0, 1.0)
    return np.clip(probs.astype(np.float64) @ weight, 0.0, 1.0)


def with_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """p ** (1 / T), renormalised per row."""
    logp = np.log(np.maximum(probs.astype(np.float64), 1e-12)) / temperature
    logp -= logp.max(axis=-1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(axis=-1, keepdims=True)


def fit_temperature(probs: np.ndarray, ages: np.ndarray) -> tuple[float, float, float]:
    """The T that minimises the mean negative log-likelihood of the true whole-year ages
    (clipped to the distribution's range); returns (T, NLL at T, NLL at T=1)."""
    idx = np.clip(np.floor(ages).astype(int), 0, probs.shape[-1] - 1)

    def nll(t: float) -> float:
        p = with_temperature(probs, t)[np.arange(len(idx)), idx]
        return float(-np.log(np.maximum(p, 1e-12)).mean())

    losses = [nll(t) for t in TEMPERATURES]
    best = int(np.argmin(losses))
    return float(TEMPERATURES[best]), losses[best], nll(1.0)


def fit_logit_temperature(p: np.ndarray, outcome: np.ndarray) -> float:
    """The T that minimises the binary log-loss of sigmoid(logit(p) / T) on held-out faces,
    for probabilities `p` as the model outputs them (mirror-averaged)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    logits = np.log(p) - np.log1p(-p)
    y = np.asarray(outcome, dtype=np.float64)

    def loss(t: float) -> float:
        q = np.clip(1 / (1 + np.exp(-logits / t)), 1e-7, 1 - 1e-7)
        return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean())

    return float(LOGIT_TEMPERATURES[int(np.argmin([loss(t) for t in LOGIT_TEMPERATURES]))])


def with_logit_temperature(p: np.ndarray, temperature: float) -> np.ndarray:
    """sigmoid(logit(p) / T): what the model's graph does with the card's temperature."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return 1 / (1 + np.exp(-(np.log(p) - np.log1p(-p)) / temperature))


def calibration_error(p: np.ndarray, outcome: np.ndarray, bins: int = CALIBRATION_BINS
                      ) -> float:
    """Expected calibration error of probabilities `p` for a yes/no `outcome`: the
    count-weighted mean gap between the mean probability and the observed share, over
    equal-width probability bins."""
    p, outcome = np.asarray(p, float), np.asarray(outcome, float)
    if not len(p):
        return float("nan")
    which = np.minimum((p * bins).astype(int), bins - 1)
    gap = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            gap += inside.sum() * abs(p[inside].mean() - outcome[inside].mean())
    return float(gap / len(p))


def reliability(p: np.ndarray, outcome: np.ndarray, bins: int = CALIBRATION_BINS
                ) -> list[tuple[float, float, int]]:
    """(mean probability, observed share, count) per non-empty bin, for the diagram."""
    p, outcome = np.asarray(p, float), np.asarray(outcome, float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    return [(float(p[which == b].mean()), float(outcome[which == b].mean()),
             int((which == b).sum())) for b in range(bins) if (which == b).any()]


def flag_rates(p: np.ndarray, ages: np.ndarray, threshold: float) -> dict[str, float | None]:
    """Share flagged (P(under) >= threshold) among real 13-17, 25-29 and 30+ year olds."""
    years = np.floor(ages)
    flagged = np.asarray(p) >= threshold

    def share(mask: np.ndarray) -> float | None:
        return float(flagged[mask].mean()) if mask.any() else None

    return {"13_17": share((years >= 13) & (years <= 17)),
            "25_29": share((years >= 25) & (years <= 29)),
            "30_plus": share(years >= 30)}


def trade_off(p: np.ndarray, ages: np.ndarray) -> list[dict[str, float | None]]:
    """The flag rates at every probability of `PROBABILITY_GRID`: the curve a compliance
    officer chooses an operating point on."""
    return [{"p": float(t), **flag_rates(p, ages, t)} for t in PROBABILITY_GRID]


def choose_operating_point(p: np.ndarray, ages: np.ndarray,
                           max_adult_rate: float = MAX_ADULT_FLAG_RATE) -> float:
    """The probability cut that flags the most real 13-17 year olds while flagging at most
    `max_adult_rate` of real 30+ shoppers (the highest such cut on ties, so fewer adults)."""
    best, best_teens = float(PROBABILITY_GRID[-1]), -1.0
    for row in trade_off(p, ages):
        adults, teens = row["30_plus"], row["13_17"]
        if adults is None or teens is None or adults > max_adult_rate:
            continue
        if teens > best_teens or (teens == best_teens and row["p"] > best):
            best, best_teens = float(row["p"]), teens
    return best


def plot_calibration(p: np.ndarray, ages: np.ndarray, age: float, operating_point: float,
                     out_png: Path) -> Path:
    """Reliability diagram of P(age < `age`) beside the trade-off curve with the operating
    point marked, as one PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    outcome = np.asarray(ages) < age
    fig = Figure(figsize=(12, 5), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    rows = reliability(p, outcome)
    left.plot([0, 1], [0, 1], color="black", linewidth=1, label="perfect")
    left.plot([r[0] for r in rows], [r[1] for r in rows], marker="o", label="model")
    for mean, share, n in rows:
        left.annotate(str(n), (mean, share), textcoords="offset points", xytext=(4, -10),
                      fontsize=7)
    left.set(xlabel=f"P(age < {age:g}) from the model", ylabel="observed share under it",
             title=f"Reliability (calibration error {calibration_error(p, outcome):.3f})",
             xlim=(0, 1), ylim=(0, 1))
    left.legend(loc="upper left")
    curve = trade_off(p, ages)
    xs = [r["p"] for r in curve]
    for key, label in (("13_17", "real 13-17 flagged"), ("25_29", "real 25-29 flagged"),
                       ("30_plus", "real 30+ flagged")):
        right.plot(xs, [np.nan if r[key] is None else r[key] for r in curve], label=label)
    right.axvline(operating_point, color="black", linestyle="--",
                  label=f"operating point p={operating_point:g}")
    right.set(xscale="log", xlabel=f"flag when P(age < {age:g}) >= p", ylabel="share flagged",
              title="Trade-off", ylim=(0, 1.02))
    right.legend(loc="lower left")
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, format="png")
    return out_png


def calibrate_card(probs_val: np.ndarray, ages_val: np.ndarray, age: float = 25.0,
                   under_head: np.ndarray | None = None) -> dict[str, Any]:
    """Fit the temperature and choose the operating point on validation faces; the card's
    `calibration` entry, with the figures that justify both.

    With `under_head` (the model's own P(age < `age`) on the same faces, uncalibrated), its
    logit temperature is fitted too, and the operating point reads P(under) from whichever
    of the two flags more real 13-17 year olds at <= 10 % of real 30+ (`source`); the
    other's figures stay beside it for comparison.
    """
    temperature, nll, nll_raw = fit_temperature(probs_val, ages_val)
    p = p_under(with_temperature(probs_val, temperature), age)
    raw = p_under(probs_val, age)
    point = choose_operating_point(p, ages_val)
    outcome = ages_val < age
    card = {
        "method": "temperature scaling of the mirror-averaged age distribution",
        "temperature": round(temperature, 4),
        "fitted_on": "validation split",
        "n": int(len(ages_val)),
        "nll": round(nll, 4), "nll_uncalibrated": round(nll_raw, 4),
        "challenge_age": float(age),
        "calibration_error": round(calibration_error(p, outcome), 4),
        "calibration_error_uncalibrated": round(calibration_error(raw, outcome), 4),
        "flag_probability": point,
        "rule": f"the cut that flags the most real 13-17 year olds while flagging at most "
                f"{MAX_ADULT_FLAG_RATE:.0%} of real 30+",
        "max_adult_flag_rate": MAX_ADULT_FLAG_RATE,
        "flag_rates_at_operating_point": flag_rates(p, ages_val, point),
        "source": "distribution",
    }
    if under_head is None:
        return card
    t_head = fit_logit_temperature(under_head, outcome)
    p_head = with_logit_temperature(under_head, t_head)
    point_head = choose_operating_point(p_head, ages_val)
    head = {"age": float(age), "temperature": round(t_head, 4),
            "calibration_error": round(calibration_error(p_head, outcome), 4),
            "calibration_error_uncalibrated": round(calibration_error(under_head, outcome), 4),
            "flag_probability": point_head,
            "flag_rates_at_operating_point": flag_rates(p_head, ages_val, point_head)}
    distribution = {k: card[k] for k in ("calibration_error", "flag_probability",
                                         "flag_rates_at_operating_point")}
    card.update(under_head=head, distribution=distribution)
    teens = (head["flag_rates_at_operating_point"]["13_17"] or 0.0,
             distribution["flag_rates_at_operating_point"]["13_17"] or 0.0)
    if teens[0] >= teens[1]:
        card.update(source="under_head", **{k: head[k] for k in distribution})
    return card


def probability_metrics(p: np.ndarray, ages: np.ndarray, age: float,
                        flag_probability: float) -> dict[str, Any]:
    """What `ageseg evaluate` reports about P(age < `age`): its calibration error, the flag
    rates at the operating point, and the trade-off curve at a few cuts."""
    rates = flag_rates(p, ages, flag_probability)
    shown = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7)
    return {
        "calibration_error": calibration_error(p, np.asarray(ages) < age),
        "flag_probability": float(flag_probability),
        "flagged_13_17": rates["13_17"],
        "flagged_25_29": rates["25_29"],
        "flagged_30_plus": rates["30_plus"],
        "trade_off": [{"p": t, **flag_rates(p, ages, t)} for t in shown],
    }


def format_probability_report(metrics: dict[str, Any], age: float) -> str:
    """Console lines for `probability_metrics`."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:5.1f}%"

    lines = [
        f"P(age < {age:g}) calibration error {metrics['calibration_error']:.3f} "
        "(0 is perfect; target <= 0.03)",
        f"operating point: flag when P(age < {age:g}) >= {metrics['flag_probability']:g}: "
        f"real 13-17 flagged {pct(metrics['flagged_13_17'])}, 25-29 "
        f"{pct(metrics['flagged_25_29'])}, 30+ {pct(metrics['flagged_30_plus'])}",
        "trade-off:      p   13-17   25-29     30+",
    ]
    if metrics.get("p_under_source") == "under_head":
        lines.insert(0, f"P(age < {age:g}) from the model's own P(under) head")
    for row in metrics["trade_off"]:
        mark = "  <- near the operating point" if abs(
            row["p"] - metrics["flag_probability"]) < 0.05 else ""
        lines.append(f"           {row['p']:>5g}  {pct(row['13_17'])}  {pct(row['25_29'])}  "
                     f"{pct(row['30_plus'])}{mark}")
    return "\n".join(lines)
