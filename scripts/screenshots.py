"""The README's screenshots, taken from a real store: the app served on `--data-dir` (a world
with rounds, e.g. a `bench.align` data dir), Listen and Leaderboard in headless Chromium, each
saved once no event is pending and every plot image has loaded.

    python scripts/screenshots.py --data-dir DIR --out docs/img

The app is started with first rounds off, so looking changes nothing but the sign-in tables.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SETTLED_JS = """() => ![...document.querySelectorAll(
    'div.wrap.default:not(.hide), div.wrap.center:not(.hide)')].some(
    (e) => e.offsetParent !== null
        && /(processing \\||queue: |\\d(\\.\\d+)?s)/.test(e.innerText))
    && [...document.querySelectorAll('img')].every((i) => i.complete)"""
"""No status tracker is showing (pending, queued or timing an event) and every image loaded."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="the store and world to show")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="where PNGs go")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=1000)
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--source", default="AI judges",
                   help="the Leaderboard's 'Judgments from' choice to show")
    return p.parse_args(argv)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "STUDIO_DATA_DIR": str(data_dir), "STUDIO_CONFIG": "/nonexistent.toml",
           "GRADIO_ANALYTICS_ENABLED": "False", "STUDIO_SERVER__FIRST_ROUND": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "app", "--host", "127.0.0.1", "--port",
                             str(port)], cwd=ROOT, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited; see {log}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
            return proc
        except OSError:
            time.sleep(2)
    proc.terminate()
    raise SystemExit(f"the app did not answer in 600 s; see {log}")


def _settle(page) -> None:
    page.wait_for_timeout(1000)
    page.wait_for_function(SETTLED_JS, timeout=600_000)
    page.wait_for_timeout(500)


def main(argv=None) -> None:
    from playwright.sync_api import sync_playwright

    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    proc = _serve(args.data_dir.resolve(), port, args.out / "screenshots-server.log")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.set_default_timeout(600_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("button[role=tab]")
            _settle(page)
            page.screenshot(path=str(args.out / "listen.png"), full_page=True)
            page.get_by_role("tab", name="Leaderboard").click()
            _settle(page)
            page.locator(f"#lb-source label:has-text('{args.source}')").click()
            _settle(page)
            page.screenshot(path=str(args.out / "leaderboard.png"), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    (args.out / "screenshots-server.log").unlink(missing_ok=True)
    print(f"saved {args.out / 'listen.png'} and {args.out / 'leaderboard.png'}")


if __name__ == "__main__":
    main()
