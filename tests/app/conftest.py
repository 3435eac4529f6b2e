"""The real server (`python -m app`) on a free port over a seeded store, and a headless Chromium.

The store is seeded through the services (tests/rating/seed.py: prompts from generated wavs,
two versions, samples pointing at wavs, A/B tasks), so the Rate tab has work without any ML.
No bundle is built for `server`: the app must work, saying the world is not built.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
ADMIN_PASSWORD = "admin-pass-123"
RATER_PASSWORD = "rater-pass-1"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--autoplay-policy=no-user-gesture-required"]


LAUNCH_CHECK = "localhost is not accessible"
"""What Gradio's launch says when its own check of the page timed out."""
LAUNCHED = "To create a public link"
"""What Gradio's launch prints once that check passed (quiet=False, share=False)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, extra_env: dict | None = None):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / "server.log"
        env = {**os.environ, "STUDIO_DATA_DIR": str(data_dir),
               "STUDIO_ADMIN_PASSWORD": ADMIN_PASSWORD, "STUDIO_CONFIG": "/nonexistent.toml",
               "GRADIO_ANALYTICS_ENABLED": "False", "STUDIO_SERVER__POLL_SECONDS": "1",
               # a test starts the rounds it watches (tests/app/test_first_start.py covers it)
               "STUDIO_SERVER__FIRST_ROUND": "false", **(extra_env or {})}
        env.pop("STUDIO_DATABASE_URL", None)
        for attempt in range(3):
            self._log = open(self.log_path, "w")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            )
            try:
                return self._wait()
            except RuntimeError:
                self.stop()
                if attempt == 2 or LAUNCH_CHECK not in self.log():
                    raise

    def _wait(self, timeout: float = 400) -> None:
        """Until Gradio's launch has checked it can reach itself and the page answers: that
        check gives up after one HEAD slower than 3 s (a loaded machine) and the server exits,
        so __init__ starts it again."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log()}")
            if LAUNCHED in self.log() and self._answers():
                return
            time.sleep(0.3)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/", timeout=10) as r:
                return r.status == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def _runtime(data_dir: Path):
    from backend.config import Settings
    from backend.runtime import Runtime

    return Runtime(Settings(data_dir=data_dir, world="mini"))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A data dir seeded through the services, and a Runtime on it for checks."""
    from tests.rating.seed import seed

    data = tmp_path_factory.mktemp("app") / "data"
    rt = _runtime(data)
    rt.settings.rating.gold_fraction = 0.0
    info = seed(rt, n_prompts=4, raters=("rater1", "rater2", "rater3", "rater4"),
                password=RATER_PASSWORD)
    yield rt, info
    rt.close()


@pytest.fixture(scope="module")
def server(seeded):
    rt, _ = seeded
    srv = Server(Path(rt.settings.data_dir), {"STUDIO_RATING__GOLD_FRACTION": "0"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed at /usr/bin/chromium")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(20_000)
    external: list[str] = []

    def on_request(req):
        host = req.url.split("/")[2] if "://" in req.url else ""
        if req.url.startswith(("http://", "https://", "ws://", "wss://")) and \
                not host.startswith(("127.0.0.1", "localhost")):
            external.append(req.url)

    pg.on("request", on_request)
    pg.external_requests = external
    yield pg
    ctx.close()


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def open_app(page, server) -> None:
    """The page with its tabs. A generous wait: a server's first page on a machine shared with
    other torch processes took 65 s (2 cores, 4 busy processes), not a figure any test bounds."""
    page.goto(server.url + "/", timeout=180_000)
    page.wait_for_selector("#tab-listen-button, button[role=tab]", timeout=180_000)


def login(page, name: str, password: str) -> None:
    page.locator("#signin-box button").first.click()
    page.locator("#login-name textarea, #login-name input").first.fill(name)
    page.locator("#login-password input").first.fill(password)
    page.locator("#login-btn").click()
    page.wait_for_selector(f"#studio-who :text('Signed in as {name}')")


def goto_tab(page, label: str) -> None:
    page.get_by_role("tab", name=label).click()
