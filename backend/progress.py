"""Progress callbacks: `progress(fraction 0..1, message)`.

Long work takes one of these: the CLI passes a tqdm bar (`tqdm_progress`), a job passes
`ctx.progress` (which raises `JobCancelled` when an admin asked to cancel, so cancellation is
noticed wherever progress is reported), tests pass nothing (`noop`).
"""

from __future__ import annotations

from collections.abc import Callable

from models.interfaces import Progress, Report

__all__ = ["Progress", "Report", "no_report", "noop", "span", "tqdm_progress"]


def noop(fraction: float, message: str = "") -> None:
    pass


def no_report(**values) -> None:
    pass


def span(progress: Progress | None, lo: float, hi: float, prefix: str = "") -> Progress:
    """The part [lo, hi] of `progress`, for one stage of a longer task; messages get
    `prefix: ` in front when given."""
    progress = progress or noop

    def sub(fraction: float, message: str = "") -> None:
        f = min(1.0, max(0.0, float(fraction)))
        progress(lo + (hi - lo) * f, f"{prefix}: {message}" if prefix else message)

    return sub


def tqdm_progress(desc: str) -> tuple[Progress, Callable[[], None]]:
    """A tqdm bar (per mille, with the ETA tqdm estimates) as a Progress, and its close()."""
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=desc, unit="‰", leave=False)

    def update(frac: float, msg: str = "") -> None:
        bar.n = int(frac * 1000)
        if msg:
            bar.set_postfix_str(msg[:60])
        bar.refresh()

    return update, bar.close
