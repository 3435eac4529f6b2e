"""The views in headless Chromium at 1400x1000 and 390x844, over a store with a known vote set
(tests/app/views_seed.py): the Leaderboard's ranks and interval texts, no raw JSON/dict/repr in
any tab or sub-tab, phone widths, views refreshing themselves when a job ends, Listen's featured
prompt; screenshots of every tab at both widths go to test-artifacts/."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from scipy import stats as sps

from tests.app.conftest import (
    ADMIN_PASSWORD,
    ARTIFACTS,
    RATER_PASSWORD,
    Server,
    _runtime,
    goto_tab,
    login,
    open_app,
)
from tests.app.views_seed import VOTES, seed_known_votes

pytestmark = pytest.mark.browser

SIZES = {"wide": (1400, 1000), "phone": (390, 844)}
PRELIMINARY_BELOW = 42
"""test-aligned-2 has 40 judgments in every source, the other two more than 42."""
RAW = re.compile(r"\{['\"]")


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    data = tmp_path_factory.mktemp("views") / "data"
    rt = _runtime(data)
    info = seed_known_votes(rt, raters=("rater1", "rater2"), password=RATER_PASSWORD)
    srv = Server(Path(data), {"STUDIO_RATING__GOLD_FRACTION": "0",
                              "STUDIO_RATING__LEADERBOARD_PRELIMINARY_VOTES":
                                  str(PRELIMINARY_BELOW)})
    yield rt, info, srv
    srv.stop()
    rt.close()


def _page(browser, server, size: str):
    w, h = SIZES[size]
    ctx = browser.new_context(viewport={"width": w, "height": h}, is_mobile=size == "phone")
    pg = ctx.new_page()
    pg.set_default_timeout(120_000)
    open_app(pg, server)
    return ctx, pg


SETTLED_JS = """() => ![...document.querySelectorAll(
    'div.wrap.default:not(.hide), div.wrap.center:not(.hide)')].some(
    (e) => e.offsetParent !== null
        && /(processing \\||queue: |\\d(\\.\\d+)?s)/.test(e.innerText))"""
"""No status tracker of the page is showing (a pending event shows "processing |", its queue
place or its timer, "2.6s", over the component it will fill)."""


def _settled(pg) -> None:
    """No event of the page is still processing."""
    pg.wait_for_timeout(500)
    pg.wait_for_function(SETTLED_JS, timeout=300_000)


def _shot(pg, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _board(pg) -> list[list[str]]:
    return pg.locator("#lb-board table tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))")


def _wilson(k: int, n: int) -> str:
    ci = sps.binomtest(k, n).proportion_ci(method="wilson")
    f = lambda x: f"{100 * x:.1f}%"  # noqa: E731 - 3 significant digits of a 10-99 % share
    return f"{f(k / n)} [{f(ci.low)}, {f(ci.high)}]"


@pytest.mark.parametrize("size", list(SIZES))
def test_leaderboard_ranks_and_interval_texts(browser, known, size):
    """The known votes, human source: test-aligned's interval lies above the other two, whose
    intervals overlap, so the ranks are 1, 2, 2; the win rates are the Wilson intervals of the
    vote counts (computed here with scipy); the MOS interval stops at 5; only test-aligned-2 is
    below the preliminary threshold; the CI column is the BT interval as +x / -y."""
    from backend import leaderboard
    from backend.formatting import pm

    rt, _info, server = known
    ctx, pg = _page(browser, server, size)
    goto_tab(pg, "Leaderboard")
    _settled(pg)
    pg.locator("#lb-source label:has-text('Human raters')").click()
    pg.wait_for_selector("#lb-summary :text('Human raters')")
    _settled(pg)
    rows = _board(pg)
    header = pg.locator("#lb-board th").all_inner_texts()
    _shot(pg, f"leaderboard-{size}")
    width = pg.evaluate("() => document.documentElement.scrollWidth")
    ctx.close()

    col = {h: k for k, h in enumerate(header)}
    by = {r[col["Version"]].replace("preliminary", "").strip(): r for r in rows}
    assert [r[col["Rank"]] for r in rows] == ["1", "2", "2"]
    assert rows[0][col["Version"]] == "test-aligned"
    wins, losses = VOTES[("test-aligned", "test-base")]
    assert by["test-aligned"][col["Win rate vs baseline"]] == _wilson(wins, wins + losses)
    wins, losses = VOTES[("test-aligned-2", "test-base")]
    assert by["test-aligned-2"][col["Win rate vs baseline"]] == _wilson(wins, wins + losses)
    assert by["test-base"][col["BT score"]] == "1000"
    assert by["test-base"][col["95% CI"]] == "reference"
    served = {r["version"]: r for r in leaderboard.leaderboard(rt, "human")["rows"]}
    for name in ("test-aligned", "test-aligned-2"):
        s = served[name]["score"]
        assert by[name][col["95% CI"]] == pm(s["value"], s["low"], s["high"])
        assert re.fullmatch(r"\+\d+ / -\d+", by[name][col["95% CI"]])
    # 5, 5, 4: mean 4.67; the t interval's top (6.1) is cut to the scale's 5
    assert by["test-aligned"][col["MOS meaning"]] == "4.67 [3.23, 5.00]"
    assert ["preliminary" in r[col["Version"]] for r in rows] == [False, False, True]
    assert width <= SIZES[size][0]  # the table scrolls in its own box, not the page


def _tabs(pg) -> list[str]:
    return [t.strip() for t in pg.get_by_role("tab").all_inner_texts() if t.strip()]


def _visible_text(pg) -> str:
    return pg.evaluate("() => document.body.innerText")


@pytest.mark.parametrize("size", list(SIZES))
def test_no_raw_json_in_any_tab_and_screenshots(browser, known, size):
    """An admin walks every tab and every Admin sub-tab: no visible text looks like a JSON
    object or a Python dict (`{"` or `{'`); each view is saved as a screenshot."""
    _rt, _info, server = known
    ctx, pg = _page(browser, server, size)
    if size == "phone":
        assert pg.evaluate("() => document.documentElement.scrollWidth") <= 390
    login(pg, "admin", ADMIN_PASSWORD)
    seen = []
    for tab in ("Listen", "Rate", "Leaderboard", "Admin"):
        goto_tab(pg, tab)
        _settled(pg)
        if tab == "Leaderboard":
            pg.wait_for_selector("#lb-board table")
        if tab == "Admin":
            subs = [t for t in _tabs(pg) if t not in ("Listen", "Rate", "Leaderboard", "Admin")]
            assert {"World", "Jobs", "Training round", "Versions"} <= set(subs), subs
            for sub in subs:
                pg.get_by_role("tab", name=sub, exact=True).click()
                _settled(pg)
                for acc in pg.locator("button.label-wrap:not(.open):visible").all():
                    acc.click()  # open the accordions too (the bundle manifest)
                _settled(pg)
                text = _visible_text(pg)
                assert not RAW.search(text), (sub, RAW.search(text).group(0),
                                              text[max(0, RAW.search(text).start() - 200):][:400])
                _shot(pg, f"tab-admin-{sub.lower().replace(' ', '-')}-{size}")
                seen.append(sub)
        else:
            text = _visible_text(pg)
            assert not RAW.search(text), (tab, text[:2000])
            _shot(pg, f"tab-{tab.lower()}-{size}")
            seen.append(tab)
        if size == "phone" and tab == "Rate":
            assert pg.evaluate("() => document.documentElement.scrollWidth") <= 390
    ctx.close()
    assert len(seen) >= 10, seen


def test_phone_rate_tap_targets(browser, known):
    """On a phone the Rate panel fits 390 px and its buttons and rating choices are at least
    44 px tall (WCAG's target size)."""
    _rt, _info, server = known
    ctx, pg = _page(browser, server, "phone")
    login(pg, "rater2", RATER_PASSWORD)
    goto_tab(pg, "Rate")
    pg.wait_for_selector("#rate-progress :text('0 of')")
    _settled(pg)
    width = pg.evaluate("() => document.documentElement.scrollWidth")
    heights = pg.evaluate("""() => [...document.querySelectorAll(
        '#vote-a, #vote-b, #vote-tie, #vote-bad, #rate-skip, #rate-panel fieldset label')]
        .filter(e => e.offsetParent).map(e => [e.id || e.innerText, e.getBoundingClientRect()
        .height])""")
    _shot(pg, "rate-phone-targets")
    ctx.close()
    assert width <= 390
    assert heights and all(h >= 44 for _, h in heights), heights


def test_views_refresh_when_a_job_ends(browser, known):
    """A new version and new votes appear on the open Leaderboard and in the open Admin Versions
    table once a job ends, without a reload, a click or re-entering the tab."""
    from backend import jobs, registry

    rt, info, server = known
    ctx, pg = _page(browser, server, "wide")
    login(pg, "admin", ADMIN_PASSWORD)
    goto_tab(pg, "Admin")
    pg.get_by_role("tab", name="Versions", exact=True).click()
    _settled(pg)
    assert "test-aligned-3" not in pg.locator("#admin-versions").inner_text()
    goto_tab(pg, "Leaderboard")
    _settled(pg)
    before = pg.locator("#lb-summary").inner_text()
    adapter = Path(rt.settings.data_dir) / "tmp-adapter"
    registry.derive_aligned(rt, info["aligned2"].id, adapter, 3, name="test-aligned-3")
    time.sleep(1.5)  # the page has read the jobs' signature before the job ends
    jid = jobs.submit(rt, "judge", {"version": "test-base"})  # no bundle: it fails at once
    deadline = time.time() + 120
    while jobs.get(rt, jid).status in ("queued", "running") and time.time() < deadline:
        time.sleep(0.5)
    assert jobs.get(rt, jid).status in ("done", "failed")
    pg.wait_for_selector("#lb-summary :text('Not listed yet')", timeout=300_000)
    assert "test-aligned-3 (0)" in pg.locator("#lb-summary").inner_text(), before
    goto_tab(pg, "Admin")  # the Versions table was refreshed by the job's end, not by this
    assert "test-aligned-3" in pg.locator("#admin-versions").inner_text()
    ctx.close()


def test_listen_opens_on_the_featured_prompt(browser, known):
    """The page opens with a prompt chosen and its players filled: the baseline first, the
    newest aligned version with continuations of it second."""
    _rt, info, server = known
    for size in SIZES:
        ctx, pg = _page(browser, server, size)
        pg.wait_for_selector("#listen-status :text('Featured prompt')")
        pg.wait_for_selector("#listen-slot-1 audio", state="attached")
        heads = [pg.locator(f"#listen-head-{i}").inner_text() for i in range(2)]
        intro = pg.locator("#listen-status").inner_text()
        _shot(pg, f"listen-featured-{size}")
        ctx.close()
        assert heads[0].startswith("test-base") and "baseline" in heads[0]
        assert heads[1].startswith("test-aligned-2") and "round 2" in heads[1]
        # each card states what the featured choice is computed from (tests/app/
        # test_listen_featured.py checks the numbers): the mean over all continuations
        assert "mean AI score 3.00 over its 2 continuations" in heads[0], heads
        assert "2 continuations of this prompt, not judged yet" in heads[1], heads
        assert "not judged yet" in intro, intro


def test_listen_notice_while_the_first_round_runs(tmp_path):
    """Before any aligned version: Listen says the first round is queued, then how far it
    got while it runs."""
    from app.listen import round_notice
    from backend import jobs, registry
    from backend.jobs import JobContext

    rt = _runtime(tmp_path / "data")
    try:
        registry.create_baseline(rt, "base", "ref")
        assert "An admin starts a training round" in round_notice(rt)
        jid = jobs.submit(rt, "round", {"parent": "base"})
        assert "first training round is queued" in round_notice(rt)
        with rt.store.session() as s:
            from db.schema import Job

            s.get(Job, jid).status = "running"
        JobContext(rt, jid, {}).progress(0.43, "round 1/1 RFT: RFT step 3/8 loss 0.612")
        text = round_notice(rt)
        assert "first training round is running" in text and "43.0% done" in text
        assert "RFT step 3/8" in text
    finally:
        rt.close()
