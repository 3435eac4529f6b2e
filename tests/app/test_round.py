"""The admin's loop in the browser, on the tiny mini-world bundle: start a DPO round from the
Admin tab with few steps, watch live progress and metrics reach done, find the new version on
the Leaderboard, then export judgments and preference pairs and parse the downloads."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path

import pytest

from tests.app.conftest import ADMIN_PASSWORD, Server, goto_tab, login, open_app, shot

pytestmark = pytest.mark.browser

ROUND_STEPS = 8
LABELS = {"judgments": "Judgments", "pairs": "Preference pairs", "csv": "CSV", "jsonl": "JSONL",
          "hf": "HF datasets"}
WATCH_JS = """() => {
  window.__snaps = [];
  const grab = () => {
    const head = document.getElementById('admin-job-head');
    const metrics = document.getElementById('admin-job-metrics');
    const stage = document.getElementById('dash-stage');
    const snap = {head: head ? head.innerText : '', metrics: metrics ? metrics.innerText : '',
                  stage: stage ? stage.innerText : '',
                  curves: !!document.querySelector('#dash-curves img')};
    const last = window.__snaps[window.__snaps.length - 1];
    if (!last || last.head !== snap.head || last.metrics !== snap.metrics ||
        last.stage !== snap.stage || last.curves !== snap.curves) {
      window.__snaps.push(snap);
    }
  };
  new MutationObserver(grab).observe(document.body,
    {subtree: true, childList: true, characterData: true});
}"""


@pytest.fixture(scope="module")
def world_server(mini_bundle, tmp_path_factory):
    """The real server over the tiny bundle; few seed samples so its start-up jobs are short."""
    data = tmp_path_factory.mktemp("world") / "data"
    data.mkdir(parents=True)
    (data / "bundle").symlink_to(mini_bundle, target_is_directory=True)
    srv = Server(data, {"STUDIO_SERVER__SEED_SAMPLES": "2"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def world_rt(world_server):
    from backend.config import Settings
    from backend.runtime import Runtime

    rt = Runtime(Settings(data_dir=world_server.data_dir, world="mini"))
    yield rt
    rt.close()


@pytest.fixture
def admin_page(browser, world_server):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    open_app(page, world_server)
    login(page, "admin", ADMIN_PASSWORD)
    goto_tab(page, "Admin")
    page.wait_for_selector("#admin-world :text('bundle built')")
    yield page
    ctx.close()


def _fill(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input").first
    box.fill(str(value))
    box.press("Tab")  # commit the value before the click reads it


def test_admin_runs_a_dpo_round_to_done(admin_page, world_server, world_rt):
    from backend import leaderboard, registry

    page = admin_page
    page.get_by_role("tab", name="Training round").click()
    # the mini default is RFT; "DPO" exactly, not "Online DPO"
    page.locator("#round-method label").filter(has_text=re.compile(r"^\s*DPO\s*$")).click()
    # the method's defaults arrive by an event; fill the steps only after they did
    page.wait_for_function(
        "() => document.querySelector('#round-beta input').value === '0.1'")
    _fill(page, "round-steps", ROUND_STEPS)
    page.evaluate(WATCH_JS)
    page.locator("#round-start").click()
    page.wait_for_selector("#round-result :text('queued as job')")
    page.wait_for_function(
        "() => /: running/.test(document.getElementById('admin-job-head').innerText)",
        timeout=300_000)
    page.wait_for_function(
        "() => /DPO step \\d+/.test(document.getElementById('admin-job-head').innerText)",
        timeout=600_000)
    shot(page, "admin-round-progress")
    page.wait_for_function(
        "() => /: (done|failed|cancelled)/.test("
        "document.getElementById('admin-job-head').innerText)", timeout=600_000)
    head = page.locator("#admin-job-head").inner_text()
    shot(page, "admin-round-done")
    assert ": done" in head, f"{head}\n{page.locator('#admin-job-metrics').inner_text()}\n" \
                             f"{world_server.log()}"

    # live progress and metrics were shown while the job ran, not only at the end
    snaps = page.evaluate("() => window.__snaps")
    running = [s for s in snaps if ": running" in s["head"]]
    steps = {int(m.group(1)) for s in running
             for m in [re.search(r"DPO step (\d+)/(\d+)", s["head"])] if m}
    assert steps and min(steps) < ROUND_STEPS, running[-5:]
    assert any("loss" in s["metrics"] and "Training step" in s["metrics"] for s in running), \
        running[-5:]
    # the round dashboard: the stage with its own time left, and the live curves drawn while
    # the DPO stage ran
    assert any(re.search(r"Stage round 1/1 DPO: [\d.]+% done, .* left in this stage", s["stage"])
               for s in running), [s["stage"] for s in running][-5:]
    assert any(s["curves"] and "DPO" in s["stage"] for s in running)
    assert len({re.search(r"(\d+)%", s["head"]).group(1) for s in running
                if re.search(r"(\d+)%", s["head"])}) >= 3  # the bar moved

    log = page.locator("#admin-job-log").inner_text()
    assert "generate" in log and "DPO" in log, log  # the job log tells the stages

    aligned = [v for v in registry.list_versions(world_rt) if v.kind == "aligned"]
    assert len(aligned) == 1
    name = aligned[0].name
    assert name in page.locator("#admin-job-metrics").inner_text()  # final_version

    # on completion, the held-out metrics before and after with their CIs
    page.wait_for_selector(f"#dash-before-after :text('After ({name})')", timeout=120_000)
    table = page.locator("#dash-before-after").inner_text()
    assert "Before (" in table and re.search(r"judge score, .*\(trains\)\s+[\d.]+ \[", table), \
        table
    shot(page, "admin-round-dashboard-done")

    goto_tab(page, "Leaderboard")
    page.locator("#lb-refresh").click()
    page.wait_for_selector(f"#lb-board td:text-is('{name}')", timeout=60_000)
    page.wait_for_function("() => !document.body.innerText.includes('processing |')",
                           timeout=120_000)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.wait_for_timeout(1000)
    shot(page, "leaderboard-after-round")
    # ranked in the table, not just "not listed yet": the round's evaluation judged held-out
    # continuations of the new version and of the baseline, so the two are compared
    ranked = {r["version"]: r for r in leaderboard.leaderboard(world_rt)["rows"]}
    assert ranked[name]["win_rate"]["n"] > 0 and ranked[name]["ai_score"]["n"] > 0


def _download(page, what: str, fmt: str, tmp_path: Path) -> Path:
    page.locator(f"#export-what label:has-text('{LABELS[what]}')").click()
    page.locator(f"#export-format label:has-text('{LABELS[fmt]}')").click()
    page.locator("#export-btn").click()
    page.wait_for_selector(f"#export-result :text('Exported {what} ({fmt})')")
    suffix = {"csv": ".csv", "jsonl": ".jsonl", "hf": "-hf.zip"}[fmt]
    link = page.locator(f"#export-file a[href*='{what}-'][href$='{suffix}']")
    link.wait_for()
    with page.expect_download() as dl:
        link.click()
    dest = tmp_path / f"{what}-{fmt}{suffix}"
    dl.value.save_as(dest)
    return dest


def test_admin_exports_judgments_and_pairs(admin_page, world_rt, tmp_path):
    """After the round: the store has AI judgments and preference pairs to export."""
    from backend.loop import rounds

    assert any(r.status == "done" for r in rounds.list_rounds(world_rt)), \
        "needs the round of test_admin_runs_a_dpo_round_to_done"
    page = admin_page
    page.get_by_role("tab", name="Exports").click()

    rows = list(csv.DictReader(io.StringIO(
        _download(page, "judgments", "csv", tmp_path).read_text())))
    assert rows and {"kind", "sample_id", "value"} <= set(rows[0])
    assert any(r["kind"] == "ai" for r in rows)
    lines = _download(page, "judgments", "jsonl", tmp_path).read_text().splitlines()
    assert len(lines) == len(rows) and json.loads(lines[0])["id"]

    pairs_csv = list(csv.DictReader(io.StringIO(
        _download(page, "pairs", "csv", tmp_path).read_text())))
    assert pairs_csv and all(r["prompt"] and r["chosen"] and r["rejected"] for r in pairs_csv)
    pairs = [json.loads(x) for x in
             _download(page, "pairs", "jsonl", tmp_path).read_text().splitlines()]
    assert len(pairs) == len(pairs_csv) and pairs[0]["chosen_units"]

    archive = _download(page, "pairs", "hf", tmp_path)
    with zipfile.ZipFile(archive) as z:
        z.extractall(tmp_path / "hf")
    from datasets import load_from_disk

    (ds_dir,) = [p for p in (tmp_path / "hf").iterdir() if p.is_dir()]
    ds = load_from_disk(str(ds_dir))
    assert ds.num_rows == len(pairs)
    assert ds.column_names[:3] == ["prompt", "chosen", "rejected"]  # what TRL's DPOTrainer reads
    shot(page, "admin-exports")


def test_listen_plays_real_continuations(browser, world_server, world_rt):
    """Anonymous Listen on the built world: generated, transcribed and AI-judged clips of the
    baseline and the new version (start-up seeding and the round made them)."""
    from backend import registry

    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    open_app(page, world_server)
    # it opens on the featured prompt: the baseline and the round's version side by side
    page.wait_for_selector("#listen-status :text('Featured prompt')")
    page.wait_for_selector("#listen-slot-1 audio", state="attached")
    page.wait_for_selector(".slot :text('AI score:')")
    versions = registry.list_versions(world_rt)
    base = next(v.name for v in versions if v.kind == "baseline")
    newest = max((v for v in versions if v.kind == "aligned"), key=lambda v: v.id).name
    assert page.locator("#listen-head-0").inner_text().startswith(base)
    assert page.locator("#listen-head-1").inner_text().startswith(newest)
    assert "/gradio_api/file=" in page.locator("#listen-slot-0 audio").get_attribute("src")
    # the listen-world picture: wait until every visible image (the plots) has loaded
    page.wait_for_function("""() => { const imgs = [...document.querySelectorAll('img')]
        .filter((i) => i.offsetParent !== null);
        return imgs.length >= 3 && imgs.every((i) => i.complete && i.naturalWidth > 0); }""")
    page.wait_for_timeout(1000)
    shot(page, "listen-world")
    page.locator("#listen-random").click()  # "Random prompt" still works
    page.wait_for_selector("#listen-status :text('A random prompt')")
    page.wait_for_selector("#listen-slot-0 audio", state="attached")
    ctx.close()

