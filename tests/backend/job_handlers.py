"""Job handlers for the job-runner tests (loaded via STUDIO_EXTRA_JOB_MODULES in workers)."""

from __future__ import annotations

import time
from pathlib import Path

from backend.jobs import JobError, handler


@handler("test_count")
def count(ctx):
    n = int(ctx.params.get("n", 5))
    for i in range(n):
        ctx.progress(i / n, f"step {i + 1} of {n}")
        time.sleep(float(ctx.params.get("sleep", 0.0)))
    ctx.log("counted")
    return {"counted": n}


@handler("test_fail")
def fail(ctx):
    raise JobError("the input was bad")


@handler("test_crash")
def crash(ctx):
    return 1 / 0


def _long(ctx):
    marker = Path(ctx.params["marker"])
    marker.write_text("started")
    for i in range(10_000):
        ctx.progress(min(i / 100, 0.99), "working")
        time.sleep(0.05)
    return {}


handler("test_long")(_long)
handler("test_long_resumable", resumable=True)(
    lambda ctx: {"resumed": True} if Path(ctx.params["marker"]).exists() else _long(ctx)
)
handler("test_exclusive", exclusive=True)(lambda ctx: {})


@handler("test_torch_threads")
def torch_threads(ctx):
    import torch

    return {"threads": torch.get_num_threads()}


@handler("test_spin")
def spin(ctx):
    """CPU-bound for `seconds` (pure Python: one core), reporting progress now and then."""
    end = time.monotonic() + float(ctx.params.get("seconds", 5.0))
    n, last = 0, 0.0
    while (now := time.monotonic()) < end:
        n += sum(range(10_000)) > 0
        if now - last > 1.0:  # rarely: a progress write waits for the disk, not the CPU
            ctx.progress(0.5, "spinning")
            last = now
    return {"loops": n}
