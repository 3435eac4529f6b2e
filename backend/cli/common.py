"""What every command module shares: the user-facing error, the runtime, output helpers.

Command modules import only light modules at the top (argparse, this file); everything that
pulls in torch or the store is imported inside the command that needs it, so `config show` or
`users list` start in a fraction of a second.
"""

from __future__ import annotations

import json
from typing import Any, get_args


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def runtime_from(args):
    from backend.runtime import Runtime

    return Runtime()


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def choices_of(model, field: str) -> list[str]:
    """The allowed values of a Literal settings field, for an argparse `choices`."""
    return list(get_args(model.model_fields[field].annotation))


def run_job_here(rt, job_id: int, what: str):
    """Run a queued job in this process with a progress bar (Ctrl-C cancels it); its record
    when it is done, else a CLIError with the job's error."""
    from backend import jobs

    status = jobs.run_inline(rt, job_id)
    j = jobs.get(rt, job_id)
    if status != "done":
        raise CLIError(f"{what} job {job_id} {status}: {j.error or ''}".strip())
    return j


def run_with_bar(args, fn, desc: str, **kw) -> None:
    """Run a service function `fn(rt, progress=..., **kw)` with a tqdm bar; print its result."""
    from backend.progress import tqdm_progress

    rt = runtime_from(args)
    update, close = tqdm_progress(desc)
    try:
        result = fn(rt, progress=update, **kw)
    finally:
        close()
    print_json(result)
