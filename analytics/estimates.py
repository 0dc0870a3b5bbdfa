"""How many of a cell's receipts each age group really made, corrected for the model's error.

Counting receipts per *estimated* age group is biased: with a 5.5-year error and 7-10-year
groups, half the shoppers land in a neighbouring group, so every table drifts toward the
middle group and every lift toward 1, however many receipts there are. The bias can be
removed because the model's errors are known: `models.confusion` measured, on validation
faces rendered as checkout scenes, how often each true age comes out as each estimated age.

The method, a maximum-likelihood label-shift estimate (the EM prior adjustment of Saerens,
Latinne & Decaestecker 2002) over true *ages* rather than groups, with the confusion as the
likelihood (an ordinal deconvolution: neighbouring ages share the estimate's evidence):

- each receipt's evidence is its estimated age in whole years, b; P(b | true year t) is read
  from the confusion, each row borrowing the pairs of neighbouring true ages (shifted by the
  local slope) so that a few hundred faces give smooth rows of the measured shape;
- per (store, category), the distribution of its buyers' true ages (MIN_SHOPPER_AGE and up)
  maximises the likelihood of the histogram of their estimated ages; EM from the parent's
  distribution, each step lightly smoothed over ages (EMS, Silverman et al. 1990), a
  Dirichlet prior of `strength` receipts toward the parent (store x category toward the
  chain's category, the chain's category toward the chain's receipts), and `iterations`
  steps only (early stopping: run to convergence, the EM fits the confusion's noise). Group
  counts are sums over the group's ages. Every step stays a distribution (no negative
  counts, unlike inverting the confusion, which is far noisier with neighbouring groups
  confused 30-70 % of the time);
- a cell's revenue is shared out by each receipt's posterior P(t | b) under its cell's fit;
- 90 % intervals: bootstrap replicates that redraw both the receipts (multinomial over the
  cell's histogram) and the confusion (Poisson weights on its pairs), reflected about the
  estimate (basic bootstrap: the regularisation's pull is corrected, not doubled), then
  widened in quadrature by the error the confusion makes on faces it was not measured on
  (`ErrorModel.held_out_error`, validation faces split in halves), at least `floor`.

Everything runs on histograms of (store, category, estimated year), which the night counts
anyway, so the cost does not grow with the receipts beyond that count; it grows with the
number of stores x categories. A model without a confusion on its card gets the observed
counts with intervals, and `kind` says so (a Gaussian error of the card's MAE was tried as a
fallback and made the mix worse than the observed counts on the truth bench).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.confusion import MAX_AGE, Confusion

MIN_SHOPPER_AGE = 14  # shoppers younger than this are not in the confusion's rows
YEARS = MAX_AGE + 1
UNKNOWN_YEAR = -1  # receipts without an age estimate
CONFUSION = "confusion"
# Without a measured confusion the estimates are the observed counts (with intervals), and
# say so: a Gaussian error of the card's MAE, or its bias and MAE per age band, made the
# group mix worse than the observed counts on bench/marketing_truth.py (TV 0.16-0.21
# against 0.10): the model's errors pile up around 25-29, which no such curve describes.
UNCORRECTED = ("no confusion on the model card: the estimates are the observed counts, "
               "not corrected")


@dataclass(frozen=True)
class EstimateOptions:
    """The estimator's knobs, chosen with bench/marketing_truth.py."""

    iterations: int = 15  # EM steps (early stopping)
    strength: float = 8.0  # the prior toward the parent mix, in receipts
    smooth_years: float = 1.0  # EMS smoothing of the true-age distribution, years
    confusion_years: float = 2.0  # neighbouring true ages a confusion row borrows from
    replicates: int = 60  # bootstrap replicates for the intervals
    level: float = 0.90
    basic: bool = True  # basic (reflected) bootstrap interval rather than percentiles
    floor: float = 0.005  # least half-width of an interval, as a share of the unit's receipts
    seed: int = 0


@dataclass(frozen=True)
class ErrorModel:
    """P(estimated year | true group) for one set of age groups, with what it came from.

    A raw row of counts per group is too noisy to invert (a few hundred faces over 100
    estimated years; the groups' rows differ little), so the confusion is read through a
    smooth model fitted to its (true, estimated) pairs: the estimate's mean m(t) and spread
    s(t) change smoothly with the true age t (kernel-weighted over neighbouring true ages),
    and the standardised errors z = (estimate - m(t)) / s(t) share one shape, taken as it is
    measured (heavy tails included). A group's row averages its true ages' rows, weighted by
    how common each age is among the validation faces, from MIN_SHOPPER_AGE up. The
    bootstrap redraws the pairs (Poisson weights), so the intervals carry the confusion's
    own uncertainty.
    """

    lowers: tuple[int, ...]
    counts: np.ndarray | None  # (YEARS, YEARS) [true year, estimated year]; None: unmeasured
    kind: str  # CONFUSION or UNCORRECTED
    width: float = 2.0  # years of neighbouring true ages a row borrows from
    scenes: int = 1  # the confusion's scenes per face and condition

    def likelihood(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """P(estimated year | true year) for the shoppers' true years MIN_SHOPPER_AGE..MAX_AGE:
        (T, YEARS), rows summing to 1; with `rng`, one bootstrap draw of it (the confusion's
        pairs redrawn with Poisson weights)."""
        if self.counts is None:
            raise ValueError("an uncorrected error model has no likelihood")
        t, e = np.nonzero(self.counts)
        w = self.counts[t, e].astype(float)
        if rng is not None:
            w = rng.poisson(w).astype(float)
        return _kernel_rows(t, e + 0.5, w, self.width)

    def held_out_error(self, options: EstimateOptions, splits: int = 8) -> np.ndarray:
        """(G,) how far a group's share is off when the confusion comes from other faces:
        the validation pairs split in halves at random, the confusion from one half, the
        EM on the other half's estimates against its true groups; the RMS error over the
        splits, divided by sqrt(2) (a whole confusion has twice the faces) and multiplied
        by sqrt(scenes per face and condition): the halves split scenes, and several scenes
        of one face in both halves would hide how much the faces themselves differ. Zero
        without a confusion (nothing is corrected then)."""
        if self.counts is None:
            return np.zeros(len(self.lowers))
        rng = np.random.default_rng(12345)
        t, e = np.nonzero(self.counts[MIN_SHOPPER_AGE:])
        t = t + MIN_SHOPPER_AGE
        w = self.counts[t, e]
        member = self.membership()
        group = year_groups(self.lowers)
        smooth = smoother(options.smooth_years)
        errors = []
        for _ in range(splits):
            a = rng.binomial(w, 0.5)
            b = w - a
            like = _kernel_rows(t, e + 0.5, a.astype(float), self.width)
            hist = np.bincount(e, b, minlength=YEARS).astype(float)
            truth = np.bincount(group[t], b, minlength=len(self.lowers)) / max(b.sum(), 1)
            start = np.bincount(t - MIN_SHOPPER_AGE, a, minlength=YEARS - MIN_SHOPPER_AGE)
            start = start + 0.5
            fit = em_ages(hist, like, start / start.sum(), 1.0, options.iterations, smooth)
            errors.append(fit @ member - truth)
        return np.sqrt(np.mean(np.square(errors), axis=0) / 2 * max(self.scenes, 1))

    def membership(self) -> np.ndarray:
        """(T, G): 1 where true year MIN_SHOPPER_AGE + i belongs to group g."""
        group = year_groups(self.lowers)[MIN_SHOPPER_AGE:]
        return (group[:, None] == np.arange(len(self.lowers))[None, :]).astype(float)

    def start(self) -> np.ndarray:
        """(T,) where the EM starts for the whole chain: the validation faces' ages,
        smoothed (flat over MIN_SHOPPER_AGE..85 without a confusion)."""
        years = np.arange(MIN_SHOPPER_AGE, YEARS, dtype=float)
        if self.counts is None:
            f = (years <= 85).astype(float)
        else:
            f = self.counts[MIN_SHOPPER_AGE:].sum(1).astype(float) + 0.5
            f = _kernel(years[:, None] - years[None, :], 3.0) @ f
        return f / f.sum()


def _kernel(distance: np.ndarray, width: float) -> np.ndarray:
    return np.exp(-0.5 * (distance / width) ** 2)


def _kernel_rows(true: np.ndarray, est: np.ndarray, weight: np.ndarray, width: float
                 ) -> np.ndarray:
    """(T, YEARS) P(estimated year | true year) from weighted (true, estimated) pairs.

    Row t borrows the pairs of neighbouring true ages t' (Gaussian weight of `width` years),
    each estimate moved by the local slope times (t - t'), so the borrowing does not blur
    the row; the shape of each row is the measured one (a model that piles estimates up
    around 25-29 keeps that pile-up). A half-year smoothing along the estimate."""
    years = np.arange(MIN_SHOPPER_AGE, YEARS, dtype=float)
    mean, slope = _local_line(true, est, weight, years, 4.0)
    d = years[:, None] - true[None, :]  # (T, pairs)
    k = _kernel(d, width) * weight[None, :]
    moved = est[None, :] + slope[:, None] * d
    cols = np.clip(np.floor(moved), 0, MAX_AGE).astype(int)
    rows = np.zeros((len(years), YEARS))
    np.add.at(rows, (np.repeat(np.arange(len(years)), len(true)), cols.reshape(-1)),
              k.reshape(-1))
    rows = rows @ _kernel_matrix(YEARS, 0.7)
    empty = rows.sum(1) == 0
    rows[empty] = 1.0  # no pairs near this age at all: no information
    rows += 1e-7
    return rows / rows.sum(-1, keepdims=True)


def _kernel_matrix(size: int, width: float) -> np.ndarray:
    i = np.arange(size, dtype=float)
    k = _kernel(i[:, None] - i[None, :], width)
    return k / k.sum(1, keepdims=True)


def _local_line(true: np.ndarray, est: np.ndarray, weight: np.ndarray, at: np.ndarray,
                width: float) -> tuple[np.ndarray, np.ndarray]:
    """Kernel-weighted local linear fit of est on true, at ages `at`: (intercept, slope)."""
    d = true[None, :] - at[:, None]
    k = _kernel(d, width) * weight[None, :]
    s0, s1, s2 = k.sum(1), (k * d).sum(1), (k * d * d).sum(1)
    t0, t1 = k @ est, (k * d) @ est
    det = s0 * s2 - s1 * s1
    ok = det > 1e-9
    safe = np.where(ok, det, 1.0)
    mean = np.where(ok, (s2 * t0 - s1 * t1) / safe, est.mean() if len(est) else 0.0)
    slope = np.where(ok, (s0 * t1 - s1 * t0) / safe, 0.0)
    return mean, slope


def error_model(card: Mapping[str, Any], lowers: tuple[int, ...]) -> ErrorModel:
    """The model's error for these age groups: its card's confusion, else the fallback."""
    confusion = Confusion.from_card(card)
    if confusion is not None:
        return ErrorModel(tuple(lowers), confusion.counts, CONFUSION,
                          scenes=confusion.scenes)
    return ErrorModel(tuple(lowers), None, UNCORRECTED)


def year_groups(lowers: tuple[int, ...]) -> np.ndarray:
    """The group index of each whole year 0..MAX_AGE."""
    return np.searchsorted(np.asarray(lowers), np.arange(YEARS), side="right") - 1


def em_ages(hist: np.ndarray, like: np.ndarray, prior: np.ndarray, strength: float,
            iterations: int, smooth: np.ndarray | None) -> np.ndarray:
    """The true-age distribution (..., T) behind histograms `hist` (..., YEARS) of estimated
    years, under `like` (T, YEARS): EM with a Dirichlet of `strength` receipts centred on
    `prior` (..., T), each step smoothed by the (T, T) matrix `smooth` (EMS, Silverman et
    al. 1990: deconvolution stays smooth in age instead of piling onto a few years)."""
    # float32: the matrix products are most of the night's estimation time, and counts of
    # receipts need no more than 7 digits.
    hist = hist.astype(np.float32)
    like = like.astype(np.float32)
    prior = prior.astype(np.float32)
    smooth = smooth.astype(np.float32) if smooth is not None else None
    n = hist.sum(-1, keepdims=True)
    f = np.broadcast_to(prior, (*hist.shape[:-1], like.shape[-2])).copy()
    ratio = hist / np.maximum(f @ like, 1e-30)  # (..., YEARS)
    for _ in range(iterations):
        resp = f * (ratio @ like.T)  # (..., T): expected receipts per true year
        f = (resp + strength * prior) / (n + strength)
        if smooth is not None:
            f = f @ smooth
        ratio = hist / np.maximum(f @ like, 1e-30)
    return f.astype(np.float64)


def smoother(years: float) -> np.ndarray | None:
    """(T, T) mass-preserving Gaussian smoothing over true years; None for none."""
    if years <= 0:
        return None
    t = np.arange(MIN_SHOPPER_AGE, YEARS, dtype=float)
    k = _kernel(t[:, None] - t[None, :], years)
    return k / k.sum(1, keepdims=True)


@dataclass
class Histograms:
    """A day's (or window's) receipts as histograms over the estimated year.

    `units`: one row per (store_id, category) and one per store for all its receipts
    (category None); `hist` (units, YEARS) receipts with an age estimate; `revenue` likewise;
    `unknown` receipts without an estimate, `unknown_revenue` theirs.
    """

    units: pd.DataFrame  # store_id, store_name, category (None: the store's receipts)
    hist: np.ndarray
    revenue: np.ndarray
    unknown: np.ndarray
    unknown_revenue: np.ndarray


def histograms(year_cells: pd.DataFrame) -> Histograms:
    """From rows of store_id, store_name, category (None for the store's all-receipts row),
    year (UNKNOWN_YEAR for no estimate), receipts, revenue."""
    keys = ["store_id", "store_name", "category"]
    frame = year_cells.assign(category=year_cells["category"].astype(object)
                              .where(year_cells["category"].notna(), None))
    units = frame[keys].drop_duplicates().reset_index(drop=True)
    units["_u"] = np.arange(len(units))
    frame = frame.merge(units, on=keys, how="left", sort=False)
    hist = np.zeros((len(units), YEARS))
    revenue = np.zeros((len(units), YEARS))
    known = frame["year"].to_numpy() >= 0
    u = frame["_u"].to_numpy()
    year = np.clip(frame["year"].to_numpy(), 0, MAX_AGE)
    np.add.at(hist, (u[known], year[known]), frame["receipts"].to_numpy(float)[known])
    np.add.at(revenue, (u[known], year[known]), frame["revenue"].to_numpy(float)[known])
    unknown = np.bincount(u[~known], frame["receipts"].to_numpy(float)[~known],
                          minlength=len(units))
    unknown_revenue = np.bincount(u[~known], frame["revenue"].to_numpy(float)[~known],
                                  minlength=len(units))
    return Histograms(units.drop(columns="_u"), hist, revenue, unknown, unknown_revenue)


@dataclass
class Estimates:
    """Per unit (Histograms.units) and group: the estimate, its interval, its revenue."""

    units: pd.DataFrame
    receipts: np.ndarray  # (units, G)
    low: np.ndarray
    high: np.ndarray
    revenue: np.ndarray
    kind: str


def estimate(h: Histograms, model: ErrorModel, options: EstimateOptions = EstimateOptions()
             ) -> Estimates:
    """Corrected receipts per group, with intervals and revenue, for every unit of `h`.

    Parents: a store x category cell leans on the chain's category, a store's all-receipts
    row and a chain's category on the chain's all receipts, which starts from the
    validation faces' ages.
    """
    if model.kind == UNCORRECTED:
        return _observed(h, model, options)
    model = dataclasses.replace(model, width=options.confusion_years)
    like = model.likelihood()
    member = model.membership()
    ages = _age_mixes(h.hist, like, h.units, model.start(), options)
    n = h.hist.sum(-1)
    receipts = (ages @ member) * n[:, None]
    # Revenue: each estimated year's spend shared by P(true year | estimated year), in
    # chunks of units so a large chain's (units, T, YEARS) array is never whole.
    revenue = np.zeros_like(receipts)
    for start in range(0, len(n), 256):
        part = slice(start, start + 256)
        joint = ages[part, :, None] * like[None]
        post = joint / np.maximum(joint.sum(1, keepdims=True), 1e-300)
        revenue[part] = np.einsum("utb,ub,tg->ug", post, h.revenue[part], member)
    rng = np.random.default_rng(options.seed)
    # A large chain (thousands of store x category units) draws fewer replicates, at least
    # 20: the intervals get noisier ends, the night stays within minutes.
    draws = min(options.replicates, max(20, options.replicates * 1000 // max(len(n), 1)))
    low = high = receipts
    if draws > 0 and len(n):
        samples = np.empty((draws, *receipts.shape))
        p = h.hist / np.maximum(n[:, None], 1)
        for r in range(draws):
            like_r = model.likelihood(rng)
            resampled = rng.multinomial(n.astype(np.int64), p).astype(float)
            samples[r] = (_age_mixes(resampled, like_r, h.units, model.start(), options)
                          @ member) * n[:, None]
        tail = (1 - options.level) / 2 * 100
        low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
        if options.basic:  # reflected about the estimate: corrects the shrinkage's bias
            low, high = 2 * receipts - high, 2 * receipts - low
        # Percentile intervals of a regularised estimate may miss the point itself.
        low, high = np.minimum(low, receipts), np.maximum(high, receipts)
        # The confusion's transfer to other faces, measured on held-out validation faces,
        # added in quadrature to each side; at least `floor` of the unit's receipts.
        z = _normal_quantile(0.5 + options.level / 2)
        held = z * model.held_out_error(options)[None, :] * n[:, None]
        held = np.maximum(held, options.floor * n[:, None])
        low = np.clip(receipts - np.hypot(receipts - low, held), 0, None)
        high = np.minimum(receipts + np.hypot(high - receipts, held), n[:, None])
    return Estimates(h.units, receipts, low, high, revenue, model.kind)


def _observed(h: Histograms, model: ErrorModel, options: EstimateOptions) -> Estimates:
    """The observed counts per estimated group, with multinomial bootstrap intervals: what a
    model without any measured error gets (the kind says so)."""
    groups = year_groups(model.lowers)
    member = (groups[:, None] == np.arange(len(model.lowers))[None, :]).astype(float)
    receipts, revenue = h.hist @ member, h.revenue @ member
    n = h.hist.sum(-1)
    low = high = receipts
    if options.replicates > 0 and len(n):
        rng = np.random.default_rng(options.seed)
        p = receipts / np.maximum(n[:, None], 1)
        draws = rng.multinomial(n.astype(np.int64), p, size=(options.replicates, len(n)))
        tail = (1 - options.level) / 2 * 100
        low, high = np.percentile(draws, [tail, 100 - tail], axis=0)
    return Estimates(h.units, receipts, np.minimum(low, receipts), np.maximum(high, receipts),
                     revenue, model.kind)


def _normal_quantile(p: float) -> float:
    """The standard normal quantile (statistics.NormalDist, without the import cost)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def _age_mixes(hist: np.ndarray, like: np.ndarray, units: pd.DataFrame, start: np.ndarray,
               options: EstimateOptions) -> np.ndarray:
    """Every unit's true-age distribution (units, T), parents first (see `estimate`)."""
    smooth = smoother(options.smooth_years)
    is_all = units["category"].isna().to_numpy()
    fit = lambda x, prior: em_ages(x, like, prior, options.strength,  # noqa: E731
                                   options.iterations, smooth)
    chain_all = em_ages(hist[is_all].sum(0), like, start, 1.0, options.iterations, smooth)
    out = np.empty((len(units), like.shape[0]))
    out[is_all] = fit(hist[is_all], chain_all)
    cats = units.loc[~is_all, "category"].to_numpy()
    if len(cats):
        names, code = np.unique(cats.astype(str), return_inverse=True)
        chain_hist = np.zeros((len(names), YEARS))
        np.add.at(chain_hist, code, hist[~is_all])
        out[~is_all] = fit(hist[~is_all], fit(chain_hist, chain_all)[code])
    return out


def estimate_frame(est: Estimates, labels: list[str]) -> pd.DataFrame:
    """Long form: store_id, store_name, category (None: all receipts), age_group, est_receipts,
    est_receipts_low, est_receipts_high, est_revenue."""
    units, g = len(est.units), len(labels)
    frame = est.units.loc[np.repeat(np.arange(units), g)].reset_index(drop=True)
    frame["age_group"] = np.tile(np.asarray(labels, dtype=object), units)
    frame["est_receipts"] = est.receipts.reshape(-1)
    frame["est_receipts_low"] = est.low.reshape(-1)
    frame["est_receipts_high"] = est.high.reshape(-1)
    frame["est_revenue"] = est.revenue.reshape(-1)
    return frame
