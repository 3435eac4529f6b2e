"""Statistics for the leaderboard and the evaluation reports: pure functions over numpy arrays.

Conventions
- Every interval is two-sided at `level` (default 95 %) and comes back as an `Estimate`
  (value, low, high, n); `low`/`high` are None when the data cannot support an interval (n < 2).
- Win rates: ties count half a win; Wilson score intervals (scipy's `binomtest(...).proportion_ci`
  for whole counts; the same closed form for half-integer counts from ties).
- Bradley-Terry: P(i beats j) = sigmoid(theta_i - theta_j) on the natural-log scale, fitted by
  maximum likelihood on *aggregated* counts. A tie is counted as half a win for each side (the
  "ties as half-wins" convention; equivalent to a logistic regression where a tie is two
  half-weight rows, one per outcome). Davidson's model would add a tie parameter but gives the
  same ranking; half-wins keep the fit identical to a plain logistic regression, which the tests
  use as the independent implementation. One item is the reference (strength 0), or the strengths
  are centred on mean 0. An optional ridge (Gaussian prior, `0.5 * ridge * |theta|^2`) keeps the
  fit finite when an item has never lost (or never won) and ties disconnected items to 0.
  The fit is Newton's method vectorized over many count matrices at once, so bootstrap
  resamples (multinomial per pair over win/loss/tie counts, not per individual vote) cost
  milliseconds.
- MOS and judge scores: mean with Student-t intervals; paired bootstrap for a mean difference.
- Agreement: Krippendorff's alpha (the `krippendorff` package), Fleiss' kappa, Cohen's kappa
  (scikit-learn) and Spearman's rho (scipy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float | None
    high: float | None
    n: int

    def to_dict(self) -> dict:
        return asdict(self)

    def contains(self, x: float) -> bool:
        return self.low is not None and self.high is not None and self.low <= x <= self.high


def _nan_estimate(n: int = 0) -> Estimate:
    return Estimate(float("nan"), None, None, n)


# --- proportions -------------------------------------------------------------------------------
def wilson(successes: float, n: int, level: float = 0.95) -> Estimate:
    """Proportion successes/n with a Wilson score interval. `successes` may be a half-integer
    (ties counted half)."""
    n = int(n)
    if n <= 0:
        return _nan_estimate(0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} outside 0..{n}")
    p = successes / n
    if float(successes).is_integer():
        ci = sps.binomtest(int(successes), n).proportion_ci(confidence_level=level,
                                                            method="wilson")
        return Estimate(p, float(ci.low), float(ci.high), n)
    z = float(sps.norm.ppf(0.5 + level / 2))
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n)


def win_rate(wins: int, losses: int, ties: int = 0, level: float = 0.95) -> Estimate:
    """Share of decided-or-tied comparisons won, ties counted half (both_bad is not passed in)."""
    n = int(wins) + int(losses) + int(ties)
    return wilson(wins + 0.5 * ties, n, level)


def gold_accuracy(correct: int, n: int, level: float = 0.95) -> Estimate:
    """A rater's accuracy on gold tasks, with a Wilson interval."""
    return wilson(int(correct), int(n), level)


# --- means -------------------------------------------------------------------------------------
def mean_t(values: Sequence[float] | np.ndarray, level: float = 0.95,
           bounds: tuple[float, float] | None = None) -> Estimate:
    """Mean with a Student-t interval (NaNs dropped). With `bounds` (a rating scale, e.g. 1-5)
    the interval is cut to the scale: a mean of 1-5 ratings cannot be above 5, so neither is any
    value the interval should keep."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = int(x.size)
    if n == 0:
        return _nan_estimate(0)
    m = float(x.mean())
    if n < 2:
        return Estimate(m, None, None, n)
    se = float(x.std(ddof=1) / math.sqrt(n))
    if se == 0:
        return Estimate(m, m, m, n)
    lo, hi = sps.t.interval(level, n - 1, loc=m, scale=se)
    if bounds is not None:
        lo, hi = max(bounds[0], lo), min(bounds[1], hi)
    return Estimate(m, float(lo), float(hi), n)


def mean_bootstrap(values: Sequence[float] | np.ndarray, resamples: int = 2000,
                   level: float = 0.95, seed: int = 0) -> Estimate:
    """Mean with a percentile bootstrap interval (NaNs dropped)."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = int(x.size)
    if n < 2:
        return mean_t(x, level)
    rng = np.random.default_rng(seed)
    means = _resampled_means(x, resamples, rng)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Estimate(float(x.mean()), float(lo), float(hi), n)


def _resampled_means(x: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `resamples` bootstrap resamples of x, in chunks to bound memory."""
    n = x.size
    out = np.empty(resamples)
    chunk = max(1, 2_000_000 // max(1, n))
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = x[idx].mean(axis=1)
    return out


def cluster_bootstrap_mean(values: Sequence[float] | np.ndarray, groups: Sequence,
                           resamples: int = 2000, level: float = 0.95, seed: int = 0
                           ) -> Estimate:
    """Mean of all values with a percentile interval from resampling whole groups (e.g. all
    judgments of one prompt together), which respects within-group correlation."""
    x = np.asarray(values, dtype=float)
    g = np.asarray(groups)
    ok = ~np.isnan(x)
    x, g = x[ok], g[ok]
    n = int(x.size)
    if n == 0:
        return _nan_estimate(0)
    _, inv = np.unique(g, return_inverse=True)
    sums = np.bincount(inv, weights=x)
    counts = np.bincount(inv).astype(float)
    m = sums.size
    if m < 2:
        return mean_t(x, level)
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    chunk = max(1, 2_000_000 // m)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, m, size=(stop - start, m))
        out[start:stop] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    lo, hi = np.quantile(out, [(1 - level) / 2, (1 + level) / 2])
    return Estimate(float(x.mean()), float(lo), float(hi), n)


def paired_bootstrap_diff(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                          resamples: int = 2000, level: float = 0.95, seed: int = 0) -> Estimate:
    """Mean of (b - a) over paired items (same item in both), with a percentile bootstrap
    interval from resampling items. Items where either side is NaN are dropped."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in shape: {a.shape} vs {b.shape}")
    d = b - a
    d = d[~np.isnan(d)]
    n = int(d.size)
    if n == 0:
        return _nan_estimate(0)
    if n < 2:
        return Estimate(float(d.mean()), None, None, n)
    rng = np.random.default_rng(seed)
    means = _resampled_means(d, resamples, rng)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return Estimate(float(d.mean()), float(lo), float(hi), n)


# --- Bradley-Terry -----------------------------------------------------------------------------
BT_RIDGE = 0.01
"""The Leaderboard's weak Gaussian prior (sd 10) on log-strengths: a version that never lost
stays finite."""

@dataclass(frozen=True)
class BTResult:
    strength: np.ndarray
    """Log-strengths (natural log odds scale); reference item (if any) at 0."""
    low: np.ndarray | None
    high: np.ndarray | None
    n_comparisons: np.ndarray
    """Comparisons each item took part in (ties included)."""
    converged: bool
    resamples: int = 0

    def rows(self) -> list[dict]:
        out = []
        for i, s in enumerate(self.strength):
            out.append({
                "value": float(s),
                "low": None if self.low is None else float(self.low[i]),
                "high": None if self.high is None else float(self.high[i]),
                "n": int(self.n_comparisons[i]),
            })
        return out


def counts_from_votes(i: np.ndarray, j: np.ndarray, outcome: np.ndarray, k: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Aggregate individual votes into (wins, ties) matrices of shape (k, k).
    outcome: 1 = i won, 0 = j won, 0.5 = tie. wins[a, b] = times a beat b; ties symmetric."""
    i, j, outcome = np.asarray(i), np.asarray(j), np.asarray(outcome, dtype=float)
    wins = np.zeros((k, k))
    ties = np.zeros((k, k))
    tie = outcome == 0.5
    win_i = outcome == 1.0
    win_j = outcome == 0.0
    np.add.at(wins, (i[win_i], j[win_i]), 1)
    np.add.at(wins, (j[win_j], i[win_j]), 1)
    np.add.at(ties, (i[tie], j[tie]), 1)
    return wins, ties + ties.T


def bt_fit_batch(wins: np.ndarray, ties: np.ndarray | None = None, reference: int | None = 0,
                 ridge: float = 0.0, max_iter: int = 100, tol: float = 1e-10
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Bradley-Terry MLE for a batch of count matrices (B, k, k) at once (Newton's method).

    Returns (theta (B, k), converged (B,)). Ties count half a win for each side. With
    `reference` the item is pinned at 0; with None the strengths are centred (mean 0).
    """
    w = np.asarray(wins, dtype=float)
    squeeze = w.ndim == 2
    if squeeze:
        w = w[None]
    if ties is not None:
        t = np.asarray(ties, dtype=float)
        w = w + 0.5 * (t[None] if t.ndim == 2 else t)
    b, k, _ = w.shape
    n = w + np.swapaxes(w, 1, 2)
    free = np.ones(k, bool)
    if reference is not None:
        free[reference] = False
    idx = np.flatnonzero(free)
    theta = np.zeros((b, k))
    eye = np.eye(idx.size)
    # a tiny jitter keeps the Newton system solvable for items without any comparisons
    jitter = 1e-9 * max(1.0, float(n.max(initial=0.0)))
    converged = np.zeros(b, bool)
    scale = np.maximum(1.0, n.sum(axis=(1, 2)))
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(theta[:, :, None] - theta[:, None, :])))
        grad = (w - n * p).sum(axis=2) - ridge * theta
        m = n * p * (1 - p)
        lap = -m
        lap[:, np.arange(k), np.arange(k)] = m.sum(axis=2)
        h = lap[:, idx][:, :, idx] + (ridge + jitter) * eye
        g = grad[:, idx]
        converged = np.abs(g).max(axis=1) <= tol * scale
        if converged.all():
            break
        step = np.linalg.solve(h, g[..., None])[..., 0]
        # damping: no coordinate moves more than 2 log-units per iteration (keeps Newton stable
        # near separation; the fixed point is unchanged)
        big = np.abs(step).max(axis=1, keepdims=True)
        step = step * np.minimum(1.0, 2.0 / np.maximum(big, 1e-300))
        step[converged] = 0.0
        theta[:, idx] += step
    if reference is None:
        theta -= theta.mean(axis=1, keepdims=True)
    return (theta[0], converged[:1]) if squeeze else (theta, converged)


def bt_fit(wins: np.ndarray, ties: np.ndarray | None = None, reference: int | None = 0,
           ridge: float = 0.0) -> np.ndarray:
    """Bradley-Terry log-strengths from a (k, k) wins matrix (and symmetric ties matrix)."""
    theta, _ = bt_fit_batch(wins, ties, reference, ridge)
    return theta


def bt_resample_counts(wins: np.ndarray, ties: np.ndarray | None, resamples: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap count matrices: for each pair (i < j), its n_ij outcomes are redrawn as a
    multinomial over (i wins, j wins, tie) with the observed shares. Returns (B, k, k) arrays."""
    w = np.asarray(wins, dtype=float)
    k = w.shape[0]
    t = np.zeros_like(w) if ties is None else np.asarray(ties, dtype=float)
    iu, ju = np.triu_indices(k, 1)
    c = np.stack([w[iu, ju], w[ju, iu], t[iu, ju]], axis=1)
    tot = c.sum(axis=1)
    keep = tot > 0
    iu, ju, c, tot = iu[keep], ju[keep], c[keep], tot[keep]
    bw = np.zeros((resamples, k, k))
    bt = np.zeros((resamples, k, k))
    if tot.size:
        draws = rng.multinomial(tot.astype(np.int64), c / tot[:, None],
                                size=(resamples, tot.size))
        bw[:, iu, ju] = draws[..., 0]
        bw[:, ju, iu] = draws[..., 1]
        bt[:, iu, ju] = draws[..., 2]
        bt[:, ju, iu] = draws[..., 2]
    return bw, bt


def bt_bootstrap(wins: np.ndarray, ties: np.ndarray | None = None, reference: int | None = 0,
                 ridge: float = 0.0, resamples: int = 1000, level: float = 0.95, seed: int = 0,
                 chunk: int = 250) -> BTResult:
    """Bradley-Terry point estimates plus percentile bootstrap intervals from resampled
    outcome counts (multinomial per pair)."""
    w = np.asarray(wins, dtype=float)
    t = None if ties is None else np.asarray(ties, dtype=float)
    theta, conv = bt_fit_batch(w, t, reference, ridge)
    ncomp = w.sum(axis=1) + w.sum(axis=0) + (0 if t is None else t.sum(axis=1))
    if resamples <= 0:
        return BTResult(theta, None, None, ncomp, bool(conv.all()), 0)
    rng = np.random.default_rng(seed)
    thetas = []
    for start in range(0, resamples, chunk):
        bw, bt = bt_resample_counts(w, t, min(chunk, resamples - start), rng)
        thetas.append(bt_fit_batch(bw, bt, reference, ridge)[0])
    boot = np.concatenate(thetas)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return BTResult(theta, lo, hi, ncomp, bool(conv.all()), resamples)


def ci_ranks(values: Sequence[float], lows: Sequence[float | None],
             highs: Sequence[float | None]) -> list[int]:
    """The arenas' rank with ties: 1 + the number of items whose interval lies wholly above
    this one's (their low above its high). Items whose intervals overlap share a rank; an item
    without an interval stands for its point value."""
    v = np.asarray(values, dtype=float)
    lo = np.array([v[i] if lows[i] is None else float(lows[i]) for i in range(v.size)])
    hi = np.array([v[i] if highs[i] is None else float(highs[i]) for i in range(v.size)])
    return [int(1 + np.sum(lo > hi[i])) for i in range(v.size)]


# --- agreement ---------------------------------------------------------------------------------
def krippendorff_alpha(reliability: np.ndarray | Sequence[Sequence[float]],
                       level: str = "ordinal") -> float | None:
    """Krippendorff's alpha over a raters x units matrix (NaN = no rating). None when fewer than
    two pairable ratings or no variation at all."""
    data = np.asarray(reliability, dtype=float)
    if data.ndim != 2 or data.shape[0] < 2:
        return None
    pairable = (~np.isnan(data)).sum(axis=0) >= 2
    if pairable.sum() < 1:
        return None
    data = data[:, pairable]
    if np.unique(data[~np.isnan(data)]).size < 2:
        return None
    import krippendorff

    return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))


def fleiss_kappa(table: np.ndarray | Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa from a units x categories count table (each unit rated by the same number
    of raters). None if undefined."""
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[0] == 0:
        return None
    m = t.sum(axis=1)
    if np.any(m != m[0]) or m[0] < 2:
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of ratings per unit")
    r = m[0]
    p_j = t.sum(axis=0) / t.sum()
    p_i = ((t * t).sum(axis=1) - r) / (r * (r - 1))
    pe = float((p_j ** 2).sum())
    if pe >= 1.0:
        return None
    return float((p_i.mean() - pe) / (1 - pe))


def cohen_kappa(a: Sequence, b: Sequence, weights: str | None = None) -> float | None:
    """Cohen's kappa between two raters' labels (scikit-learn); weights None/'linear'/'quadratic'.
    None if undefined (fewer than 2 items or a single label overall)."""
    from sklearn.metrics import cohen_kappa_score

    a, b = list(a), list(b)
    if len(a) < 2 or len(set(a) | set(b)) < 2:
        return None
    k = float(cohen_kappa_score(a, b, weights=weights))
    return None if math.isnan(k) else k


def spearman(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, float | None]:
    """Spearman's rho and its p-value (None when undefined, e.g. a constant side)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None, None
    res = sps.spearmanr(a, b)
    return float(res.statistic), float(res.pvalue)


def _kappa_rows(a: np.ndarray, b: np.ndarray, n_labels: int, weights: str | None
                ) -> np.ndarray:
    """Cohen's kappa of each row of (B, n) integer label arrays a, b (NaN where undefined)."""
    rows, n = a.shape
    flat = a * n_labels + b + (np.arange(rows) * n_labels * n_labels)[:, None]
    conf = np.bincount(flat.ravel(), minlength=rows * n_labels * n_labels).reshape(
        rows, n_labels, n_labels).astype(float) / n
    i, j = np.meshgrid(np.arange(n_labels), np.arange(n_labels), indexing="ij")
    w = {None: (i != j).astype(float), "linear": np.abs(i - j).astype(float),
         "quadratic": ((i - j) ** 2).astype(float)}[weights]
    expected = conf.sum(axis=2)[:, :, None] * conf.sum(axis=1)[:, None, :]
    denom = (w * expected).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 1 - (w * conf).sum(axis=(1, 2)) / denom, np.nan)


def _percentile(boot: np.ndarray, level: float) -> tuple[float | None, float | None]:
    boot = boot[~np.isnan(boot)]
    if boot.size < 2:
        return None, None
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def kappa_bootstrap(a: Sequence, b: Sequence, weights: str | None = None,
                    resamples: int = 1000, level: float = 0.95, seed: int = 0
                    ) -> Estimate | None:
    """Cohen's kappa of two raters' labels over the same items (`cohen_kappa`) with a
    percentile interval from resampling items. Labels must be orderable for weighted kappa
    (ordinal scores). None when kappa is undefined."""
    value = cohen_kappa(a, b, weights)
    if value is None:
        return None
    labels = sorted(set(a) | set(b))
    code = {x: k for k, x in enumerate(labels)}
    ai = np.array([code[x] for x in a])
    bi = np.array([code[x] for x in b])
    n = ai.size
    if resamples <= 0:
        return Estimate(value, None, None, n)
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    lo, hi = _percentile(_kappa_rows(ai[idx], bi[idx], len(labels), weights), level)
    return Estimate(value, lo, hi, n)


def spearman_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = 1000,
                       level: float = 0.95, seed: int = 0) -> Estimate | None:
    """Spearman's rho (`spearman`) with a percentile interval from resampling items; None when
    undefined (fewer than 3 items or a constant side)."""
    value, _ = spearman(a, b)
    if value is None:
        return None
    x, y = np.asarray(a, float), np.asarray(b, float)
    n = x.size
    if resamples <= 0:
        return Estimate(value, None, None, n)
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    rx = sps.rankdata(x[idx], axis=1)
    ry = sps.rankdata(y[idx], axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(axis=1) / np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    lo, hi = _percentile(rho, level)
    return Estimate(value, lo, hi, n)
