"""Subprocess for the kill test: runs one long round job on the tiny world until SIGKILLed."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from backend import jobs
from backend.loop import rounds
from tests.loop.conftest import make_tiny_runtime

if __name__ == "__main__":
    torch.set_num_threads(1)
    rt = make_tiny_runtime(Path(sys.argv[1]), Path(sys.argv[2]))
    rounds.start_round(rt, None, "ai", 1, overrides={"steps": 100000}, evaluate=False)
    jobs.Worker(rt).run_once()
