"""Admin starts a DPO round in the browser and watches it to the end (mini world needed)."""

from __future__ import annotations

import importlib

import pytest

from tests.app.conftest import ADMIN_PASSWORD, Server, goto_tab, login, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def world_server(request, tmp_path_factory):
    for mod in ("backend.rounds", "backend.training", "backend.pipeline", "backend.bootstrap"):
        try:
            importlib.import_module(mod)
        except ImportError as e:
            pytest.skip(f"the DPO loop is not available yet ({mod}: {e})")
    try:
        bundle = request.getfixturevalue("mini_bundle")
    except pytest.FixtureLookupError:
        pytest.skip("the mini_bundle fixture does not exist yet")
    data = tmp_path_factory.mktemp("world") / "data"
    data.mkdir(parents=True)
    (data / "bundle").symlink_to(bundle, target_is_directory=True)
    srv = Server(data)
    yield srv
    srv.stop()


def test_admin_runs_a_dpo_round_to_done(browser, world_server):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(world_server.url + "/")
    login(page, "admin", ADMIN_PASSWORD)
    goto_tab(page, "Admin")
    page.wait_for_selector("#admin-world :text('bundle built')")
    page.get_by_role("tab", name="DPO round").click()
    page.locator("#round-start").click()
    page.wait_for_selector("#round-result :text('queued as job')")
    page.wait_for_function(
        "() => /: (done|failed|cancelled)/.test("
        "document.getElementById('admin-job-head').innerText)", timeout=900_000)
    head = page.locator("#admin-job-head").inner_text()
    shot(page, "admin-round-done")
    page.close()
    assert ": done" in head, head
