"""Admin > Jobs, and the job monitor below the sub-tabs: start a job, watch one job's progress,
log and live metrics (a timer polls while an admin is signed in), cancel it, list recent jobs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import gradio as gr

from app.admin.base import PRIVATE
from app.auth import current
from app.common import esc, md_table, plain
from backend import jobs
from backend.formatting import num
from backend.runtime import Runtime
from backend.users import UserInfo

JOB_KINDS = ("generate", "transcribe", "judge", "judge_pairs", "evaluate", "import_prompts")


def job_kinds() -> list[str]:
    """The kinds of JOB_KINDS whose handler is registered."""
    jobs.load_handlers()
    return [k for k in JOB_KINDS if k in jobs.HANDLERS]


def jobs_table(rt: Runtime) -> str:
    rows = [{"id": j.id, "kind": j.kind, "status": j.status,
             "progress": f"{100 * (j.progress or 0):.0f}%", "message": j.message,
             "created": str(j.created_at)[:19]} for j in jobs.list_jobs(rt, 25)]
    return md_table(rows)


def job_detail(rt: Runtime, job_id) -> tuple[str, str, str]:
    """(head line with a progress bar, the log's tail, the metrics) of one job."""
    if job_id in (None, "", 0):
        return "_choose a job_", "", ""
    try:
        j = jobs.get(rt, int(job_id))
    except ValueError as e:
        return f"**{esc(e)}**", "", ""
    pct = 100 * (j.progress or 0)
    bar = "█" * int(pct // 5) + "░" * (20 - int(pct // 5))
    head = (f"**Job {j.id} — {esc(j.kind)}: {esc(j.status)}** `{bar}` {pct:.0f}%  \n"
            f"{esc(j.message)}")
    if j.error:
        head += f"  \n**Error:** {esc(j.error)}"
    return head, (j.log or "")[-20_000:], result_md(j.result)


SHOWN_ELSEWHERE = {"train_curve", "train_metrics", "train_step", "train_max_steps", "stage",
                   "rounds"}
"""Result keys the monitor writes in its own words (or the round dashboard draws)."""


def result_md(result: dict) -> str:
    """A job's live or final result in sentences: the training step and its metrics, one line
    per finished round, then every other value as "name: value" (numbers to 3 digits)."""
    if not result:
        return "_no metrics yet_"
    lines = []
    if "train_step" in result:
        live = ", ".join(f"{esc(k)} {num(v)}" for k, v in
                         (result.get("train_metrics") or {}).items())
        lines.append(f"**Training step {result['train_step']} of "
                     f"{result.get('train_max_steps', '?')}**: {live}")
    for r in result.get("rounds") or []:
        m = r.get("metrics") or {}
        lines.append(f"**Round {r.get('round_id')} made {esc(r.get('version'))}**: "
                     + esc(plain({k: v for k, v in m.items() if not isinstance(v, list | dict)})))
    for k, v in result.items():
        if k not in SHOWN_ELSEWHERE and v not in (None, "", [], {}):
            lines.append(f"{esc(k.replace('_', ' '))}: {esc(plain(v))}")
    return "  \n".join(lines)


def start_job(rt: Runtime, user: UserInfo, kind: str, version: str | None, split: str | None,
              limit, extra: str | None) -> tuple[int, str]:
    """Queue a job from the form: (job id, message). The form's fields go into the parameters
    only for the kinds that take them; explicit JSON parameters win."""
    if kind not in job_kinds():
        raise gr.Error(f"Job '{kind}' is not available yet.")
    try:
        params = json.loads(extra or "{}")
        if not isinstance(params, dict):
            raise ValueError
    except ValueError:
        raise gr.Error("Extra parameters must be a JSON object.") from None
    if version and kind in ("generate", "judge", "transcribe", "evaluate"):
        params.setdefault("version", version)
    if split and kind in ("generate", "evaluate"):
        params.setdefault("split", split)
    if limit not in (None, "", 0) and kind == "generate":
        params.setdefault("limit", int(limit))
    try:
        jid = jobs.submit(rt, kind, params, user_id=user.id)
    except ValueError as e:
        raise gr.Error(str(e)) from None
    return jid, f"Queued **{esc(kind)}** as job {jid}."


def cancel_job(rt: Runtime, user: UserInfo, job_id) -> str:
    if job_id in (None, ""):
        raise gr.Error("Choose a job id.")
    try:
        st = jobs.cancel(rt, int(job_id))
    except ValueError as e:
        raise gr.Error(str(e)) from None
    return f"Cancel requested (job is {st})."


def poll(rt: Runtime, user: UserInfo | None, job_id) -> tuple:
    """The timer's refresh of the monitor: for an admin the watched job and the job list; for
    anyone else no update and no data (the timer is not role-guarded, so it must not raise)."""
    if user is None or not user.is_admin:
        return gr.Markdown(), gr.Code(), gr.Markdown(), gr.Markdown()
    head, log, metrics = job_detail(rt, job_id)
    return head, log, metrics, jobs_table(rt)


def build_jobs() -> SimpleNamespace:
    """The Jobs tab's form. Its button sets the monitor's job id, so `build_admin` wires it."""
    with gr.Tab("Jobs"):
        with gr.Row():
            kind = gr.Dropdown(list(JOB_KINDS), value="generate", label="Job")
            version = gr.Dropdown([], label="Model version", elem_id="admin-job-version")
            split = gr.Dropdown(["", "train", "dev", "test"], value="",
                                label="Prompt split (empty = all)")
            limit = gr.Number(None, label="Max prompts", precision=0)
        params = gr.Textbox(label="Extra parameters (JSON, optional)", value="",
                            placeholder='e.g. {"n": 4}')
        start = gr.Button("Start job", variant="primary", elem_id="admin-job-start")
        started = gr.Markdown()
    return SimpleNamespace(kind=kind, version=version, split=split, limit=limit, params=params,
                           start=start, started=started)


def build_monitor(rt: Runtime, admin, session: gr.State) -> SimpleNamespace:
    """The job monitor, its cancel button, and the timer that `app.main` switches on for
    admins."""
    gr.Markdown("### Job monitor")
    with gr.Row():
        watch_id = gr.Number(None, label="Watch job id", precision=0, elem_id="admin-watch-id")
        cancel_btn = gr.Button("Cancel watched job", size="sm", variant="stop")
    job_head = gr.Markdown(elem_id="admin-job-head")
    with gr.Accordion("Live metrics", open=True):
        job_metrics = gr.Markdown(elem_id="admin-job-metrics")
    job_log = gr.Code(label="Log", language=None, lines=8, interactive=False,
                      elem_id="admin-job-log")
    jobs_md = gr.Markdown(elem_id="admin-jobs")

    @admin
    def do_cancel(sess, jid, *, user=None):
        return cancel_job(rt, user, jid)

    @admin
    def watch(sess, jid, *, user=None):
        return job_detail(rt, jid)

    def tick(sess, jid):
        return poll(rt, current(rt, sess), jid)

    cancel_btn.click(do_cancel, [session, watch_id], [job_head], **PRIVATE)
    watch_id.change(watch, [session, watch_id], [job_head, job_log, job_metrics], **PRIVATE)
    timer = gr.Timer(rt.settings.server.poll_seconds, active=False)
    timer.tick(tick, [session, watch_id], [job_head, job_log, job_metrics, jobs_md],
               **PRIVATE, show_progress="hidden")
    return SimpleNamespace(watch_id=watch_id, jobs_md=jobs_md, timer=timer)
