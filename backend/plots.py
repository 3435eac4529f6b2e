"""The figures of the Leaderboard and the round dashboard, drawn with matplotlib's object API
(`Figure`, never pyplot's global state, so server threads can draw at once). Each takes plain
data (the leaderboard's rows, `leaderboard.round_series`, a job's logged metrics) and returns a
Figure; labels use `backend.formatting`, so a number reads the same in a plot as in a table."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from backend.formatting import num

PRELIMINARY = "#9ca3af"
MAIN = "#2563eb"


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _message(fig: Figure, text: str) -> Figure:
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def bt_ci(rows: Sequence[dict], baseline: float) -> Figure:
    """The versions' BT scores as points with their 95% intervals, best on top; preliminary
    ones in grey; the baseline's level as a dashed line."""
    rows = [r for r in rows if r.get("score")]
    fig = _figure(7, 1.0 + 0.45 * max(2, len(rows)))
    if not rows:
        return _message(fig, "no comparisons yet")
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    for yy, r in zip(y, rows, strict=True):
        s = r["score"]
        lo = s["low"] if s["low"] is not None else s["value"]
        hi = s["high"] if s["high"] is not None else s["value"]
        colour = PRELIMINARY if r.get("preliminary") else MAIN
        ax.errorbar(s["value"], yy, xerr=[[s["value"] - lo], [hi - s["value"]]], fmt="o",
                    color=colour, capsize=4)
        ax.annotate(num(s["value"]), (s["value"], yy), textcoords="offset points",
                    xytext=(0, 7), ha="center", fontsize=8)
    ax.axvline(baseline, color="#6b7280", linestyle="--", linewidth=1)
    ax.set_yticks(y, [r["version"] for r in rows])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("BT score (baseline = 1000); grey = preliminary")
    ax.set_title("BT score with 95% CI", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


def win_heatmap(names: Sequence[str], share: Sequence[Sequence[float | None]],
                n: Sequence[Sequence[int]]) -> Figure:
    """Row version's share of wins against the column version (ties half), with the number of
    comparisons; blank where two versions never met."""
    k = len(names)
    fig = _figure(min(7, 2.6 + 1.0 * k), min(5, 1.4 + 0.7 * k))
    if k < 2:
        return _message(fig, "fewer than two ranked versions")
    ax = fig.add_subplot()
    m = np.array([[np.nan if x is None else x for x in row] for row in share], dtype=float)
    im = ax.imshow(m, cmap="RdBu", vmin=0, vmax=1)
    for a in range(k):
        for b in range(k):
            if not np.isnan(m[a, b]):
                ax.text(b, a, f"{num(m[a, b])}\nn={n[a][b]}", ha="center", va="center",
                        fontsize=7, color="white" if abs(m[a, b] - 0.5) > 0.3 else "black")
    ax.set_xticks(range(k), names, rotation=30, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("against")
    ax.set_ylabel("win rate of")
    ax.set_title("Win rate between versions (ties half)", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def round_curves(title: str, series: dict[str, list[tuple]]) -> Figure:
    """One panel of per-round curves: each series' value per round with its 95% CI as error
    bars, whole rounds on the x axis, the legend below the plot (never over the data)."""
    fig = _figure(6.2, 3.6)
    if not series:
        return _message(fig, f"{title}: no evaluations yet")
    ax = fig.add_subplot()
    rounds = sorted({p[1] for pts in series.values() for p in pts})
    width = 0.08 * (len(series) - 1)
    for k, (label, pts) in enumerate(series.items()):
        shift = -width / 2 + 0.08 * k
        x = np.array([p[1] for p in pts], dtype=float) + shift
        y = np.array([p[2] for p in pts], dtype=float)
        lo = np.array([p[2] if p[3] is None else p[3] for p in pts], dtype=float)
        hi = np.array([p[2] if p[4] is None else p[4] for p in pts], dtype=float)
        ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", capsize=3, label=label)
    ax.set_xlim(min(rounds) - 0.5, max(rounds) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round (0 = baseline)")
    ax.set_title(f"{title} (95% CI)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncol=2 if len(series) > 1 else 1, fontsize=8,
               frameon=False)
    return fig


def training_curves(history: Sequence[dict], keys: Sequence[tuple[str, str]],
                    title: str) -> Figure:
    """One small panel per logged metric (`keys`: (metric name, label)) against the training
    step: the live curves of a round while it trains."""
    keys = [(k, label) for k, label in keys if any(k in h for h in history)]
    fig = _figure(7, 2.6)
    if not keys:
        return _message(fig, f"{title}: no training steps logged yet")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, (k, label) in zip(axes, keys, strict=True):
        pts = [(h["step"], h[k]) for h in history if k in h and h.get("step") is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3,
                color=MAIN)
        ax.set_title(f"{label}: {num(pts[-1][1])}" if pts else label, fontsize=9)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return fig


def histogram(values: Sequence[float], title: str, xlabel: str,
              bins: Sequence[float] | int = 10) -> Figure:
    """A small histogram (e.g. the score margins of the pairs a round kept)."""
    fig = _figure(4.6, 2.6)
    if not len(values):
        return _message(fig, f"{title}: none")
    ax = fig.add_subplot()
    ax.hist(values, bins=bins, color=MAIN, edgecolor="white")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return fig
