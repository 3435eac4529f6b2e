"""Bradley-Terry with bootstrap CIs: aggregated counts (backend.stats) vs a straightforward
scikit-learn logistic-regression refit on individual votes per resample.

1,000,000 simulated votes among 20 versions (about 8 % ties, counted as half-wins in both fits),
200 bootstrap resamples. The logistic-regression path resamples votes with replacement and refits
on them; it is run for `--lr-resamples` resamples and its per-resample time extrapolated to 200.
Prints times, the max abs difference of the point estimates, and as the LAST line `ratio: N.NN`
(extrapolated LR time / our time).

Usage: .venv/bin/python -m bench.leaderboard [--votes 1000000 --versions 20 --resamples 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from backend import stats  # noqa: E402


def simulate(n_votes: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    true = np.concatenate([[0.0], rng.normal(0, 0.7, k - 1)])
    i = rng.integers(0, k, n_votes)
    j = (i + rng.integers(1, k, n_votes)) % k
    p = 1 / (1 + np.exp(-(true[i] - true[j])))
    # ties taken evenly from both sides' chances, so the expected half-win score stays p:
    # the "true" strengths are then exactly what a ties-as-half-wins fit estimates
    tie_p = 0.2 * np.minimum(p, 1 - p)
    u = rng.random(n_votes)
    outcome = np.where(u < p - tie_p / 2, 1.0, np.where(u < p + tie_p / 2, 0.5, 0.0))
    return true, i, j, outcome


def lr_design(i, j, outcome, k):
    """Sparse design (e_i - e_j without the reference column); a tie = two half-weight rows."""
    from scipy import sparse

    n = len(i)
    rows = np.repeat(np.arange(n), 2)
    cols = np.stack([i, j], 1).ravel()
    vals = np.tile([1.0, -1.0], n)
    x = sparse.csr_matrix((vals, (rows, cols)), shape=(n, k))[:, 1:]
    tie = outcome == 0.5
    xs = sparse.vstack([x, x[tie]]).tocsr()
    ys = np.concatenate([np.where(tie, 1.0, outcome), np.zeros(tie.sum())])
    ws = np.concatenate([np.where(tie, 0.5, 1.0), np.full(tie.sum(), 0.5)])
    return xs, ys, ws


def lr_fit(x, y, w):
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-8, max_iter=1000)
    lr.fit(x, y, sample_weight=w)
    return np.concatenate([[0.0], lr.coef_[0]])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--votes", type=int, default=1_000_000)
    ap.add_argument("--versions", type=int, default=20)
    ap.add_argument("--resamples", type=int, default=200)
    ap.add_argument("--lr-resamples", type=int, default=5)
    a = ap.parse_args()
    k = a.versions
    true, i, j, outcome = simulate(a.votes, k)
    print(f"{a.votes:,} votes, {k} versions, {a.resamples} bootstrap resamples")

    t0 = time.perf_counter()
    wins, ties = stats.counts_from_votes(i, j, outcome, k)
    t_agg = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = stats.bt_bootstrap(wins, ties, reference=0, resamples=a.resamples, seed=1)
    t_ours = time.perf_counter() - t0 + t_agg
    print(f"counts + BT fit + {a.resamples} resamples: {t_ours:.3f} s "
          f"(aggregation {t_agg:.3f} s)")

    x, y, w = lr_design(i, j, outcome, k)
    t0 = time.perf_counter()
    theta_lr = lr_fit(x, y, w)
    t_lr_point = time.perf_counter() - t0
    diff = float(np.abs(theta_lr - res.strength).max())
    print(f"sklearn LogisticRegression point fit: {t_lr_point:.2f} s")
    print(f"max abs difference of estimates (ours vs LR): {diff:.2e}")
    print(f"max abs error vs true strengths: {np.abs(res.strength - true).max():.4f}")

    rng = np.random.default_rng(2)
    n = len(i)
    boots = []
    t0 = time.perf_counter()
    for _ in range(a.lr_resamples):
        idx = rng.integers(0, n, n)
        xb, yb, wb = lr_design(i[idx], j[idx], outcome[idx], k)
        boots.append(lr_fit(xb, yb, wb))
    per = (time.perf_counter() - t0) / max(1, a.lr_resamples)
    t_lr = t_lr_point + per * a.resamples
    print(f"LR per resample (resample votes + design + fit): {per:.2f} s; ran {a.lr_resamples},"
          f" extrapolated to {a.resamples}: {t_lr:.1f} s")
    if len(boots) >= 2:
        sd_lr = np.std(boots, axis=0, ddof=1)[1:]
        sd_ours = ((res.high - res.low) / (2 * 1.96))[1:]
        print(f"bootstrap SD, median over versions: ours {np.median(sd_ours):.4f}, "
              f"LR ({len(boots)} resamples) {np.median(sd_lr):.4f}")
    print(f"estimates agree within 1e-3: {diff < 1e-3}")
    print(f"ratio: {t_lr / t_ours:.2f}")


if __name__ == "__main__":
    main()
