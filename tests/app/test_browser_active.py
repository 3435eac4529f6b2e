"""A rater session in headless Chromium on a server with `rating.routing = "active"`: the tasks
the AI judges disagree on come first, votes are stored as on any other task, and everyone sees
the judge-trust section on the Leaderboard."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from tests.app.conftest import RATER_PASSWORD, Server, _runtime, goto_tab, login, open_app, shot
from tests.app.test_browser import _play_both, _votes
from tests.rating.test_routing import judge_tasks

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def active_world(tmp_path_factory):
    from db.schema import RatingTask
    from tests.rating.seed import seed

    data = tmp_path_factory.mktemp("active") / "data"
    rt = _runtime(data)
    seed(rt, n_prompts=4, raters=("rater1",), password=RATER_PASSWORD)
    with rt.store.read() as s:
        ids = sorted(s.scalars(select(RatingTask.id)))
    hard = set(ids[-2:])
    judge_tasks(rt, hard)
    srv = Server(Path(rt.settings.data_dir), {"STUDIO_RATING__GOLD_FRACTION": "0",
                                              "STUDIO_RATING__ROUTING": "active",
                                              "STUDIO_RATING__ACTIVE_COVERAGE": "0"})
    yield rt, srv, hard
    srv.stop()
    rt.close()


def test_rater_session_under_active_routing(browser, active_world):
    from backend import users
    from db.schema import TaskAssignment

    rt, srv, hard = active_world
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(20_000)
    try:
        open_app(page, srv)
        login(page, "rater1", RATER_PASSWORD)
        goto_tab(page, "Rate")
        for k in range(3):
            page.wait_for_selector(f"#rate-progress :text('{k} of')")
            _play_both(page)
            page.locator("#vote-a").click()
            page.wait_for_selector(f"#rate-progress :text('{k + 1} of')")
        shot(page, "rate-active")
        uid = users.find_user(rt, "rater1").id
        with rt.store.read() as s:
            order = list(s.scalars(select(TaskAssignment.task_id)
                                   .where(TaskAssignment.user_id == uid)
                                   .order_by(TaskAssignment.id)))
        assert set(order[:2]) == hard  # the disagreements first
        assert len(order) == len(set(order)) == 4  # three voted, the fourth open; none twice
        assert len([v for v in _votes(rt, "rater1") if v["kind"] == "ab"]) == 3

        goto_tab(page, "Leaderboard")
        page.get_by_text("Judge trust (agreement with people)").click()
        page.wait_for_selector("#lb-judge-trust :text('j1@v1')")
        assert "j2@v1" in page.locator("#lb-judge-trust").inner_text()
    finally:
        ctx.close()
