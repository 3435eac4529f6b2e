"""The Admin sub-tabs' handlers called directly with a Runtime on a temporary SQLite store (no
server, no browser): what each returns for the page, and what it stores or refuses. No bundle
is built here, so the mini world reads "not built"."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import gradio as gr
import pytest

from app.admin import build_admin, exports, jobs, refresh, rounds, tasks, users, versions, world
from backend import jobs as backend_jobs
from backend import rating
from backend import users as backend_users
from tests.rating.seed import seed


@pytest.fixture
def rt(tmp_path):
    from backend.config import Settings
    from backend.runtime import Runtime

    runtime = Runtime(Settings(data_dir=tmp_path / "data", world="mini"))
    yield runtime
    runtime.close()


@pytest.fixture
def boss(rt):
    return backend_users.add_user(rt, "boss", "boss-pass-123", "admin")


@pytest.fixture
def seeded(rt):
    return seed(rt, n_prompts=2, raters=("rater1",))


def _session(user) -> dict:
    """A page session holding a live sign-in of `user` (as app.auth makes one)."""
    from app.auth import SIGN_INS, digest

    token = SIGN_INS.open(user.id, hours=1)
    return {"user_id": user.id, "login_at": time.time(), "sign_in": digest(token)}


# --- World -----------------------------------------------------------------------------------
def test_world_summary_says_the_world_is_not_built(rt):
    text, manifest = world.world_summary(rt, [])
    assert text.startswith("**World:** mini — **the world is not built** "
                           "(run `python -m backend bootstrap`)")
    assert "**Prompts:** 0 · **Versions:** 0 · **Rating tasks:** 0 (0 QC)" in text
    assert "<td>error</td>" in manifest and "{" not in manifest  # a table, not JSON
    assert "Bundle quality" not in text and "Unusable model files" not in text


def test_world_summary_shows_a_running_build(rt):
    """While `make run` (another process) builds the world, the World tab says which stage and
    how long, not 'not built'; the build's lock says it is alive."""
    import json

    from filelock import FileLock

    from backend import world as world_build

    work = world_build.work_dir(rt.settings.bundle_dir)
    work.mkdir(parents=True)
    (work / world_build.STATUS).write_text(json.dumps(
        {"stage": "asr", "stage_fraction": 0.3, "stage_eta_s": 125, "fraction": 0.2,
         "eta_s": 1300, "preset": "full", "seed": 0}))
    with FileLock(f"{work}.lock"):
        text, _ = world.world_summary(rt, [])
    assert text.startswith("**World:** mini — **Building the mini world** (full preset, seed 0):"
                           " stage **asr** 30 %, about 2 min 05 s left in it")
    assert "21 min 40 s left" in text
    text, _ = world.world_summary(rt, [])  # the builder is gone: no stale progress
    assert "**the world is not built**" in text


def test_world_summary_counts_the_store(rt, seeded):
    text, _ = world.world_summary(rt, [])
    n_tasks = rating.task_counts(rt)["tasks"]
    assert n_tasks > 0
    assert f"**Prompts:** 2 · **Versions:** 2 · **Rating tasks:** {n_tasks} (0 QC)" in text


def test_import_is_refused_without_a_bundle(rt, boss):
    with pytest.raises(gr.Error, match="The world is not built"):
        world.import_bundle(rt, boss)
    assert backend_jobs.list_jobs(rt) == []


def test_quality_summary_names_the_missed_bars():
    manifest = {"bars": {"asr_wer": True, "judge_rank": False}, "preset": "tiny", "seed": 0,
                "benchmarks": {"swuggy": {"dev": {"accuracy": 0.75}}},
                "build_seconds": {"total": 90}}
    line = world.quality_summary(manifest)
    assert "tiny preset, seed 0, built in 1.5 min" in line
    assert "sWUGGY 75.0 %" in line and "sBLIMP ?" in line
    assert line.endswith("**bars not met:** judge_rank")
    assert world.quality_summary({}) == ""


# --- Jobs and the monitor --------------------------------------------------------------------
def test_started_job_shows_in_the_table_and_the_monitor(rt, boss):
    jid, message = jobs.start_job(rt, boss, "generate", "test-base", "dev", 3, "{}")
    assert message == f"Queued **generate** as job {jid}."
    job = backend_jobs.get(rt, jid)
    assert job.params == {"version": "test-base", "split": "dev", "limit": 3}
    assert job.status == "queued" and job.kind == "generate"

    head, log, metrics = jobs.job_detail(rt, jid)
    assert head.startswith(f"**Job {jid} — generate: queued** `{'░' * 20}` 0%")
    assert log == "" and metrics == "_no metrics yet_"
    table = jobs.jobs_table(rt).splitlines()
    assert table[0] == "| id | kind | status | progress | message | created |"
    assert table[2].startswith(f"| {jid} | generate | queued | 0% | queued |")

    assert jobs.cancel_job(rt, boss, jid) == "Cancel requested (job is cancelled)."
    assert ": cancelled**" in jobs.job_detail(rt, jid)[0]


def test_job_form_fields_go_only_where_they_apply(rt, boss):
    """Explicit JSON parameters win over the form; `judge` takes no split or limit."""
    jid, _ = jobs.start_job(rt, boss, "generate", "test-base", "", 3, '{"limit": 1}')
    assert backend_jobs.get(rt, jid).params == {"version": "test-base", "limit": 1}
    jid, _ = jobs.start_job(rt, boss, "judge", "test-base", "dev", 3, "")
    assert backend_jobs.get(rt, jid).params == {"version": "test-base"}


@pytest.mark.parametrize("kind, extra, says", [
    ("generate", "[1, 2]", "Extra parameters must be a JSON object"),
    ("generate", "{not json", "Extra parameters must be a JSON object"),
    ("round", "{}", "Job 'round' is not available yet"),  # rounds start from their own tab
])
def test_bad_job_form_is_refused_and_queues_nothing(rt, boss, kind, extra, says):
    with pytest.raises(gr.Error, match=says):
        jobs.start_job(rt, boss, kind, None, "", None, extra)
    assert backend_jobs.list_jobs(rt) == []


def test_job_detail_of_a_missing_job(rt):
    assert jobs.job_detail(rt, None) == ("_choose a job_", "", "")
    assert jobs.job_detail(rt, 999) == ("**no job 999**", "", "")
    with pytest.raises(gr.Error, match="no job 999"):
        jobs.cancel_job(rt, None, 999)


def test_monitor_poll_shows_nothing_to_non_admins(rt, boss):
    rater = backend_users.add_user(rt, "rita", "rita-pass-123", "rater")
    jid, _ = jobs.start_job(rt, boss, "generate", None, "", None, "{}")
    for who in (None, rater):
        out = jobs.poll(rt, who, jid)
        assert len(out) == 4 and not any(isinstance(x, str) for x in out)  # no data, no update
    head, _, _, table = jobs.poll(rt, boss, jid)
    assert f"Job {jid}" in head and f"| {jid} | generate |" in table


# --- Training round --------------------------------------------------------------------------
def _round_form(**changes) -> dict:
    form = {"parent": None, "source": "ai", "n": 1, "curriculum": True, "method": "dpo",
            "chosen": 3.0,
            "rejected": 1.0, "beta": 0.1, "rank": 8, "steps": 10, "max_prompts": 0,
            "per_prompt": 4, "finetune": "lora"}
    return {**form, **changes}


@pytest.mark.parametrize("changes, says", [
    ({"n": 11}, "rounds must be between 1 and 10"),
    ({"source": "crowd"}, "source must be one of ai, human, both"),
    ({"beta": "steep"}, "beta"),
    ({"method": "ppo"}, "unknown training method 'ppo'"),
    ({"method": "grpo", "source": "human"}, "AI judge only"),
    ({"method": "grpo", "per_prompt": 1}, "num_generations must be >= 2"),
    ({"method": "online-dpo", "per_prompt": 3}, "num_generations must be even"),
    ({"method": "online-dpo", "source": "both"}, "AI judge only"),
    ({"finetune": "half"}, "finetune"),
])
def test_round_with_a_bad_setting_is_refused_before_queueing(rt, boss, changes, says):
    with pytest.raises(gr.Error, match="Cannot start the round: ") as err:
        rounds.queue_round(rt, boss, **_round_form(**changes))
    assert says in str(err.value)
    assert backend_jobs.list_jobs(rt) == [] and rounds.rounds_table(rt) == "<p>No rounds yet.</p>"


def test_rounds_table_says_which_judges_a_round_trusted_and_why(rt, seeded):
    from db.schema import TrainingRound

    with rt.store.session() as s:
        s.add(TrainingRound(parent_version_id=seeded["base"].id, pair_source="both", judges=[
            {"name": "a", "judge": "a@v1", "used": True, "weight": 1.0, "reason": "ok"},
            {"name": "b", "judge": "b@v1", "used": False, "weight": 0.0,
             "reason": "only 3 item(s) rated by people too, need 20"}]))
    table = rounds.rounds_table(rt)
    assert "a@v1 used (weight 1); b@v1 not used: only 3 item(s) rated by people too" in table
    assert "{" not in table  # no raw JSON


def test_round_is_queued_with_the_form_as_explicit_settings(rt, boss, seeded):
    jid, message = rounds.queue_round(rt, boss, **_round_form(parent="test-aligned", rank=0))
    assert message == f"DPO round queued as job **{jid}**; watching it below."
    params = backend_jobs.get(rt, jid).params
    assert params["parent"] == "test-aligned" and params["rounds"] == 1
    # 0 in a number box = the configured default, sent as "no override"
    assert params["overrides"] == {"method": "dpo", "finetune": "lora", "chosen_min": 3.0,
                                   "rejected_max": 1.0, "beta": 0.1, "lora_rank": None,
                                   "max_steps": 10, "max_prompts": None, "n": 4}


def test_a_grpo_round_sends_its_group_size_and_no_pair_thresholds(rt, boss, seeded):
    jid, message = rounds.queue_round(rt, boss, **_round_form(method="grpo", beta=0.0))
    assert message.startswith(f"GRPO round queued as job **{jid}**")
    assert backend_jobs.get(rt, jid).params["overrides"] == {
        "method": "grpo", "finetune": "lora", "beta": 0.0, "lora_rank": 8, "max_steps": 10,
        "max_prompts": None, "num_generations": 4}
    # the form's method-dependent defaults are the effective settings of that method
    assert rounds.method_defaults(rt, "grpo") == (rt.settings.grpo.beta,
                                                  rt.settings.grpo.lora_rank,
                                                  rt.settings.grpo.max_steps,
                                                  rt.settings.grpo.num_generations, "lora")


def test_an_online_dpo_round_sends_its_samples_per_prompt_and_beta(rt, boss, seeded):
    jid, message = rounds.queue_round(rt, boss, **_round_form(method="online-dpo", beta=0.2,
                                                              finetune="full"))
    assert message.startswith(f"Online DPO round queued as job **{jid}**")
    assert backend_jobs.get(rt, jid).params["overrides"] == {
        "method": "online-dpo", "finetune": "full", "beta": 0.2, "lora_rank": 8,
        "max_steps": 10, "max_prompts": None, "num_generations": 4}
    cfg = rt.settings.online_dpo
    assert rounds.method_defaults(rt, "online-dpo") == (cfg.beta, cfg.lora_rank, cfg.max_steps,
                                                        cfg.num_generations, "lora")


# --- Versions --------------------------------------------------------------------------------
def test_versions_list_their_lineage_and_adapter_health(rt, seeded):
    assert versions.version_choices(rt) == [("test-base (baseline, round 0)", "test-base"),
                                            ("test-aligned (aligned, round 1)", "test-aligned")]
    base, aligned = versions.lineage_rows(rt, set())
    assert (base["lineage"], base["adapter ok"]) == ("test-base", "")
    assert (aligned["lineage"], aligned["adapter ok"]) == ("test-aligned ← test-base", True)
    bad = {seeded["aligned"].adapter_path}
    assert versions.lineage_rows(rt, bad)[1]["adapter ok"] is False


# --- Users, rating tasks, exports ------------------------------------------------------------
def test_users_are_added_or_refused(rt, boss):
    message, table = users.create_user(rt, boss, "  newbie ", "newbie-pass-1", "rater")
    assert message == "Added **newbie** (rater)." and "| newbie |" in table
    message, update = users.create_user(rt, boss, "shorty", "short", "rater")
    assert message.startswith("**Refused:**") and isinstance(update, gr.Markdown)
    assert "shorty" not in [u["name"] for u in backend_users.list_users(rt)]
    assert users.change_role(rt, boss, "newbie", "admin")[0] == "**newbie** is now admin."
    assert backend_users.find_user(rt, "newbie").role == "admin"


def test_flagging_an_unknown_rater_is_refused(rt, boss):
    message, update = users.flag_rater(rt, boss, "nobody", True)
    assert message.startswith("**Refused:**") and isinstance(update, gr.Markdown)


def test_qc_task_needs_sample_a(rt, boss, seeded):
    message, summary = tasks.add_qc_task(rt, boss, 0, None, "A", False)
    assert message == "**Give sample A.**"
    assert summary == tasks.tasks_summary(rt)
    assert summary.startswith(f"**{rating.task_counts(rt)['tasks']}** active tasks (0 gold/trap)")


def test_export_of_judgments_writes_a_csv(rt, boss, seeded):
    path, message = exports.export(rt, boss, "judgments", "csv", False)
    assert Path(path).is_file() and message.startswith("Exported judgments (csv) to `")
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    assert {"kind", "sample_id", "value"} <= set(header)


def test_export_of_pairs_without_any_is_refused(rt, boss):
    with pytest.raises(gr.Error, match="Export failed"):
        exports.export(rt, boss, "pairs", "jsonl", False)


# --- the whole tab ---------------------------------------------------------------------------
def test_refresh_fills_every_output_and_needs_the_admin_role(rt, boss, seeded):
    with gr.Blocks():
        session = gr.State(None)
        refresh_all, outputs, _timer = build_admin(rt, session)
    values = refresh(rt, boss)
    assert len(values) == len(outputs) == 11
    job_version, round_parent = values[5], values[6]
    assert job_version.value == "test-aligned"  # the newest version
    assert round_parent.value == "test-base"  # the baseline
    assert "<td>error</td>" in values[1]  # the manifest: not built
    assert refresh_all(_session(boss))[0] == values[0]

    rater = backend_users.find_user(rt, "rater1")
    with pytest.raises(gr.Error, match="admin role"):
        refresh_all(_session(rater))
    with pytest.raises(gr.Error, match="Sign in"):
        refresh_all(None)


def test_upload_joins_the_training_split_unless_told_and_every_choice_is_read(runtime):
    """Issue 19 item 6: an Admin upload used to land in `test`, which neither rounds nor
    evaluation read."""
    from app.admin.prompts import split_choices

    gen = runtime.settings.generation
    values = [v for _, v in split_choices(runtime)]
    assert values[0] == gen.train_split and set(values) == {gen.train_split,
                                                          gen.heldout_split, "test"}
