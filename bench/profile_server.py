"""Run `python -m app ARGS` under yappi (CPU clock, every thread) and, on SIGTERM, write the
profile: `PATH.txt` (functions by own CPU time and by total) and `PATH.pstat` (for snakeviz or
pstats). Used by `python -m bench.raters --profile PATH` to see where the server's CPU per vote
goes.

    .venv/bin/python -m bench.profile_server PATH --host 127.0.0.1 --port 7860
"""

from __future__ import annotations

import io
import runpy
import signal
import sys
from pathlib import Path


def main() -> None:
    import yappi

    out = Path(sys.argv[1])
    sys.argv = ["app", *sys.argv[2:]]

    def dump(*_):
        yappi.stop()
        stats = yappi.get_func_stats()
        stats.save(str(out.with_suffix(".pstat")), type="pstat")
        buf = io.StringIO()
        for key in ("tsub", "ttot"):
            buf.write(f"--- by {key} ---\n")
            stats.sort(key, "desc").print_all(out=buf, columns={
                0: ("name", 100), 1: ("ncall", 10), 2: ("tsub", 8), 3: ("ttot", 8)})
        out.with_suffix(".txt").write_text(buf.getvalue())
        sys.exit(0)

    signal.signal(signal.SIGTERM, dump)
    yappi.set_clock_type("cpu")
    yappi.start()
    runpy.run_module("app", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
