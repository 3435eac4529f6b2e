"""backend.stats against hand-computed values and independent implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from backend import stats


def test_wilson_matches_scipy_and_hand_formula():
    # 7/10, hand-computed Wilson 95%: centre (0.7 + z^2/20)/(1 + z^2/10), z = 1.959964
    z = 1.959963984540054
    n, p = 10, 0.7
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    e = stats.wilson(7, 10)
    assert e.value == pytest.approx(0.7)
    assert e.low == pytest.approx(centre - half, abs=1e-9)
    assert e.high == pytest.approx(centre + half, abs=1e-9)
    assert (round(e.low, 4), round(e.high, 4)) == (0.3968, 0.8922)


def test_wilson_half_counts_continuous_with_whole_counts():
    # the closed form used for half-wins agrees with scipy at neighbouring whole counts
    lo6, lo7 = stats.wilson(6, 10).low, stats.wilson(7, 10).low
    assert lo6 < stats.wilson(6.5, 10).low < lo7
    assert stats.wilson(0, 0).low is None


def test_win_rate_counts_ties_half():
    e = stats.win_rate(wins=6, losses=2, ties=2)
    assert e.value == pytest.approx(0.7)
    assert e.n == 10
    assert e.low < 0.7 < e.high


def test_mean_t_hand_computed():
    x = [3, 4, 5, 4, 4]
    e = stats.mean_t(x)
    se = np.std(x, ddof=1) / math.sqrt(5)
    t = 2.7764451051977987  # t_{0.975, 4}
    assert e.value == pytest.approx(4.0)
    assert e.low == pytest.approx(4 - t * se)
    assert e.high == pytest.approx(4 + t * se)
    assert stats.mean_t([2.0]).low is None
    assert stats.mean_t([]).n == 0


def test_paired_bootstrap_diff_covers_true_shift():
    rng = np.random.default_rng(1)
    item = rng.normal(0, 1, 400)  # large item effect: pairing removes it
    a = item + rng.normal(0, 0.2, 400)
    b = item + 0.1 + rng.normal(0, 0.2, 400)
    e = stats.paired_bootstrap_diff(a, b, resamples=2000)
    assert e.low < 0.1 < e.high
    assert e.high - e.low < 0.1  # an unpaired interval would be ~0.28 wide
    unpaired_se = math.sqrt(a.var(ddof=1) / 400 + b.var(ddof=1) / 400)
    assert (e.high - e.low) < 2 * 1.96 * unpaired_se / 2
    with pytest.raises(ValueError):
        stats.paired_bootstrap_diff([1, 2], [1, 2, 3])


def test_bt_two_items_closed_form():
    # 2 items: MLE is log(w01 / w10); ties add half to each side
    wins = np.array([[0, 6], [2, 0]])
    ties = np.array([[0, 2], [2, 0]])
    theta = stats.bt_fit(wins, ties, reference=0)
    assert theta[0] == 0
    assert theta[1] == pytest.approx(math.log(3 / 7), abs=1e-9)
    centred = stats.bt_fit(wins, ties, reference=None)
    assert centred.sum() == pytest.approx(0, abs=1e-12)
    assert centred[0] - centred[1] == pytest.approx(math.log(7 / 3), abs=1e-9)


def test_bt_three_items_hand_checked_likelihood_equations():
    wins = np.array([[0, 3, 5], [2, 0, 4], [1, 2, 0]], float)
    theta = stats.bt_fit(wins, reference=0)
    # MLE condition: observed wins of each item = expected wins
    n = wins + wins.T
    p = 1 / (1 + np.exp(-(theta[:, None] - theta[None, :])))
    assert np.allclose((n * p).sum(axis=1), wins.sum(axis=1), atol=1e-8)


def _simulate(true, n_votes, tie_p, rng):
    k = len(true)
    i = rng.integers(0, k, n_votes)
    j = (i + rng.integers(1, k, n_votes)) % k
    p = 1 / (1 + np.exp(-(true[i] - true[j])))
    # ties taken evenly from both sides' chances: the expected half-win score stays p, so the
    # generating strengths are what a ties-as-half-wins fit estimates
    tie = tie_p * 2 * np.minimum(p, 1 - p)
    u = rng.random(n_votes)
    outcome = np.where(u < p - tie / 2, 1.0, np.where(u < p + tie / 2, 0.5, 0.0))
    return i, j, outcome


def _sklearn_bt(i, j, outcome, k, reference=0, C=np.inf):
    """Independent implementation: logistic regression on individual votes, x = e_i - e_j
    without the reference column, a tie = two half-weight rows."""
    from sklearn.linear_model import LogisticRegression

    x = np.zeros((len(i), k))
    x[np.arange(len(i)), i] = 1
    x[np.arange(len(i)), j] = -1
    x = np.delete(x, reference, axis=1)
    tie = outcome == 0.5
    xs = np.concatenate([x[~tie], x[tie], x[tie]])
    ys = np.concatenate([outcome[~tie], np.ones(tie.sum()), np.zeros(tie.sum())])
    ws = np.concatenate([np.ones((~tie).sum()), np.full(tie.sum(), 0.5), np.full(tie.sum(), 0.5)])
    lr = LogisticRegression(C=C, fit_intercept=False, tol=1e-12, max_iter=10_000)
    lr.fit(xs, ys, sample_weight=ws)
    return np.insert(lr.coef_[0], reference, 0.0)


def test_bt_matches_logistic_regression_and_recovers_truth():
    rng = np.random.default_rng(7)
    true = np.array([0.0, 0.4, -0.3, 1.0, 0.2])
    i, j, outcome = _simulate(true, 6000, 0.1, rng)
    wins, ties = stats.counts_from_votes(i, j, outcome, 5)
    assert wins.sum() + ties.sum() / 2 == 6000
    res = stats.bt_bootstrap(wins, ties, reference=0, resamples=1000, level=0.99, seed=3)
    assert res.converged
    ref = _sklearn_bt(i, j, outcome, 5)
    assert np.abs(res.strength - ref).max() < 1e-5
    # the true strengths lie inside the fit's 99% bootstrap intervals
    assert np.all((res.low <= true) & (true <= res.high)), (res.low, true, res.high)
    # the bootstrap spread agrees with the asymptotic (Fisher) standard errors
    n = wins + wins.T + ties
    th = res.strength
    p = 1 / (1 + np.exp(-(th[:, None] - th[None, :])))
    m = n * p * (1 - p)
    lap = np.diag(m.sum(1)) - m
    se = np.sqrt(np.diag(np.linalg.inv(lap[1:, 1:])))
    width = (res.high - res.low)[1:]
    assert np.allclose(width, 2 * 2.5758 * se, rtol=0.15)


def test_bt_ridge_matches_penalized_logistic_regression():
    rng = np.random.default_rng(2)
    true = np.array([0.0, 2.5, -1.0])
    i, j, outcome = _simulate(true, 60, 0.0, rng)
    wins, ties = stats.counts_from_votes(i, j, outcome, 3)
    ridge = 0.5
    theta = stats.bt_fit(wins, ties, reference=0, ridge=ridge)
    ref = _sklearn_bt(i, j, outcome, 3, C=1 / ridge)
    assert np.abs(theta - ref).max() < 1e-5


def test_bt_separation_stays_finite_with_ridge():
    wins = np.array([[0, 0], [5, 0]], float)  # item 1 never lost
    theta = stats.bt_fit(wins, reference=0, ridge=0.01)
    assert np.isfinite(theta).all() and theta[1] > 2
    res = stats.bt_bootstrap(wins, None, reference=0, ridge=0.01, resamples=50)
    assert np.isfinite(res.low).all()


def test_bt_batch_equals_single_fits():
    rng = np.random.default_rng(5)
    batch = rng.integers(1, 20, size=(4, 4, 4)).astype(float)
    for b in batch:
        np.fill_diagonal(b, 0)
    theta, conv = stats.bt_fit_batch(batch, reference=None)
    assert conv.all()
    for t, b in zip(theta, batch, strict=True):
        assert np.allclose(t, stats.bt_fit(b, reference=None), atol=1e-9)


def test_fleiss_kappa_wikipedia_example():
    # Fleiss (1971) worked example from Wikipedia: 10 subjects, 14 raters, 5 categories -> 0.210
    table = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]
    assert stats.fleiss_kappa(table) == pytest.approx(0.2099, abs=1e-4)


def test_krippendorff_alpha_known_values():
    # the example in the krippendorff package's README (documented nominal alpha 0.691)
    data = [
        [np.nan, np.nan, np.nan, np.nan, np.nan, 3, 4, 1, 2, 1, 1, 3, 3, np.nan, 3],
        [1, np.nan, 2, 1, 3, 3, 4, 3, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan],
        [np.nan, np.nan, 2, 1, 3, 4, 4, np.nan, 2, 1, 1, 3, 3, np.nan, 4],
    ]
    assert stats.krippendorff_alpha(data, "nominal") == pytest.approx(0.691, abs=1e-3)
    assert stats.krippendorff_alpha([[1, 2, 3], [1, 2, 3]], "interval") == pytest.approx(1.0)
    assert stats.krippendorff_alpha([[1, 2, 3]]) is None


def test_cohen_kappa_and_spearman():
    a = [1, 2, 3, 4, 5, 5, 4, 3]
    b = [1, 2, 3, 4, 5, 4, 4, 2]
    # hand: observed agreement 6/8; expected from marginals
    pa = np.bincount(a, minlength=6)[1:] / 8
    pb = np.bincount(b, minlength=6)[1:] / 8
    pe = float((pa * pb).sum())
    assert stats.cohen_kappa(a, b) == pytest.approx((0.75 - pe) / (1 - pe))
    rho, p = stats.spearman(a, b)
    assert rho == pytest.approx(sps.spearmanr(a, b).statistic)
    assert stats.spearman([1, 1, 1], [1, 2, 3]) == (None, None)
    assert stats.cohen_kappa([3, 3], [3, 3]) is None


def test_gold_accuracy():
    e = stats.gold_accuracy(9, 10)
    assert e.value == 0.9 and e.low < 0.9 < e.high <= 1.0


def test_ci_ranks_share_a_rank_where_intervals_overlap():
    from backend.stats import ci_ranks

    # a is above b and c (its low above their highs); b and c overlap; d has no interval and
    # sits below c's interval but inside b's
    values = [3.0, 1.0, 0.5, -0.2]
    lows = [2.5, -0.5, 0.0, None]
    highs = [3.5, 1.5, 1.0, None]
    assert ci_ranks(values, lows, highs) == [1, 2, 2, 3]


def test_mean_t_bounded_to_the_rating_scale():
    from backend.stats import mean_t

    free, cut = mean_t([5, 5, 4], bounds=None), mean_t([5, 5, 4], bounds=(1, 5))
    assert free.high > 5 and cut.high == 5 and cut.low == free.low and cut.value == free.value


def test_kappa_and_spearman_bootstrap_match_the_libraries_and_cover_them():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(3)
    a = rng.integers(1, 6, 80)
    b = np.clip(a + rng.integers(-1, 2, 80), 1, 5)
    for weights in (None, "quadratic"):
        e = stats.kappa_bootstrap(list(a), list(b), weights, resamples=500)
        assert e.value == pytest.approx(cohen_kappa_score(a, b, weights=weights))
        assert e.low < e.value < e.high and e.n == 80
    r = stats.spearman_bootstrap(a, b, resamples=500)
    assert r.value == pytest.approx(stats.spearman(a, b)[0]) and r.low < r.value < r.high
    assert stats.kappa_bootstrap([1, 1, 1], [1, 1, 1]) is None  # one label: undefined
    assert stats.spearman_bootstrap([1, 2], [2, 1]) is None
