"""Progress callbacks: `progress(fraction 0..1, message)`.

Long work takes one of these: the CLI passes a tqdm bar (`tqdm_progress`), a job passes
`ctx.progress` (which raises `JobCancelled` when an admin asked to cancel, so cancellation is
noticed wherever progress is reported), tests pass nothing (`noop`).
"""

from __future__ import annotations

from collections.abc import Callable

from models.interfaces import Progress, Report

__all__ = ["Progress", "Report", "StageClock", "format_duration", "no_report", "noop", "span",
           "tqdm_progress"]


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


def format_duration(seconds: float) -> str:
    """'45 s', '3 min 10 s', '1 h 05 min' (an ETA for people, not a timestamp)."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class StageClock:
    """Progress through stages whose expected durations were measured (on some machine), with
    the current stage's own ETA and the whole task's.

    Why not tqdm's ETA over one overall fraction: stages run at different speeds, so a linear
    extrapolation lies (issue 18: 33 min at 20 % for a 20-minute build). Here the overall
    fraction weighs stages by their measured durations; the current stage's ETA extrapolates its
    own progress once it has some; the later stages' ETA is their measured duration times this
    machine's speed relative to the measuring one (from the stages run so far). Stages skipped
    (reused from an earlier run) count as done and say nothing about speed."""

    MIN_FRACTION = 0.05
    """A stage's own rate is trusted from this fraction on (before, its measured duration)."""

    def __init__(self, expected_seconds: dict[str, float],
                 clock: Callable[[], float] | None = None):
        import time

        self.expected = dict(expected_seconds)
        self.total = sum(self.expected.values())
        self.clock = clock or time.monotonic
        self.done = 0.0
        self.ran_actual = self.ran_expected = 0.0
        self.stage: str | None = None
        self.stage_fraction = 0.0
        self.t0 = self.clock()
        self.started = self.t0

    def start(self, stage: str) -> None:
        self.stage, self.stage_fraction, self.t0 = stage, 0.0, self.clock()

    def update(self, fraction: float) -> None:
        self.stage_fraction = min(1.0, max(0.0, float(fraction)))

    def end(self, ran: bool = True) -> None:
        """The current stage finished (`ran=False`: it was skipped, its result reused)."""
        if self.stage is None:
            return
        if ran:
            self.ran_actual += self.clock() - self.t0
            self.ran_expected += self.expected[self.stage]
        self.done += self.expected[self.stage]
        self.stage = None

    @property
    def fraction(self) -> float:
        cur = self.expected[self.stage] * self.stage_fraction if self.stage else 0.0
        return min(1.0, (self.done + cur) / self.total) if self.total else 0.0

    def _own_rate_ok(self) -> bool:
        return self.stage is not None and self.stage_fraction >= self.MIN_FRACTION

    def speed(self) -> float:
        """Seconds here per measured second: from the stages run so far, else from the current
        stage's own progress, else 1 (as fast as where the durations were measured)."""
        actual, expected = self.ran_actual, self.ran_expected
        if self._own_rate_ok():
            actual += self.clock() - self.t0
            expected += self.expected[self.stage] * self.stage_fraction
        return actual / expected if expected > 0 else 1.0

    def stage_eta(self) -> float | None:
        if self.stage is None:
            return None
        if self._own_rate_ok():
            elapsed = self.clock() - self.t0
            return elapsed * (1 - self.stage_fraction) / self.stage_fraction
        return max(0.0, self.expected[self.stage] * self.speed() - (self.clock() - self.t0))

    def eta(self) -> float:
        """Seconds until the last stage ends: the current stage's ETA plus the stages not yet
        started at their measured durations times this machine's speed."""
        later = self.total - self.done - (self.expected[self.stage] if self.stage else 0.0)
        return (self.stage_eta() or 0.0) + max(0.0, later) * self.speed()

    def status(self) -> dict:
        """Everything a bar or a page shows, as plain numbers (seconds)."""
        eta = self.stage_eta()
        return {"stage": self.stage, "stage_fraction": round(self.stage_fraction, 4),
                "stage_eta_s": None if eta is None else round(eta, 1),
                "fraction": round(self.fraction, 4), "eta_s": round(self.eta(), 1),
                "elapsed_s": round(self.clock() - self.started, 1)}

    def describe(self) -> str:
        """'stage 45 %, 3 min 10 s left · build 62 %, about 6 min 00 s left'."""
        s = self.status()
        head = (f"stage {100 * s['stage_fraction']:.0f} %, {format_duration(s['stage_eta_s'])} "
                f"left · " if s["stage"] else "")
        return f"{head}build {100 * s['fraction']:.0f} %, about {format_duration(s['eta_s'])} left"
