"""Admin > Rating tasks: make A/B and MOS tasks from stored samples, add gold tasks with a known
answer, and add trap clips that tell the rater what to answer."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from app.admin.base import PRIVATE, whole
from app.common import esc, md_table
from backend import rating, traps
from backend.runtime import Runtime
from backend.users import UserInfo


def tasks_summary(rt: Runtime) -> str:
    c = rating.task_counts(rt)
    return (f"**{c['tasks']}** active tasks ({c['qc_tasks']} gold/trap), "
            f"**{c['ab_votes']}** A/B votes.")


def sync_tasks(rt: Runtime, user: UserInfo, per_prompt, with_mos) -> tuple[str, str]:
    """Create the missing tasks: (result line, the task summary)."""
    made = rating.sync_tasks(rt, int(per_prompt or 2), bool(with_mos))
    refused = (f" Refused {made['refused']} degenerate one(s): identical clips, an empty "
               "continuation or no playable audio." if made["refused"] else "")
    return (f"Created {made['ab']} A/B and {made['mos']} MOS task(s).{refused}",
            tasks_summary(rt))


def add_qc_task(rt: Runtime, user: UserInfo, a, b, answer: str, trap) -> tuple[str, str]:
    """A gold (or trap) task on sample `a` (and `b` for A/B; empty for MOS)."""
    if whole(a) is None:  # an empty number box arrives as 0
        return "**Give sample A.**", tasks_summary(rt)
    try:
        tid = rating.add_qc_task(rt, whole(a), whole(b), answer, bool(trap))
    except rating.RatingError as e:
        return f"**Refused:** {esc(e)}", tasks_summary(rt)
    return f"Added QC task {tid}.", tasks_summary(rt)


def add_trap_tasks(rt: Runtime, user: UserInfo, n) -> tuple[str, str]:
    """`n` trap tasks (spoken instruction + a real continuation), listed with their answers."""
    try:
        made = traps.add_traps(rt, int(n or 4))
    except rating.RatingError as e:
        return f"**Refused:** {esc(e)}", tasks_summary(rt)
    return (f"Added {len(made)} trap task(s):\n\n"
            + md_table(made, ["task_id", "trap", "answer", "prompt_id"])), tasks_summary(rt)


def build_tasks(rt: Runtime, admin, session: gr.State) -> SimpleNamespace:
    with gr.Tab("Rating tasks"):
        tasks_md = gr.Markdown()
        with gr.Row():
            per_prompt = gr.Number(2, label="A/B pairs per prompt and version pair",
                                   precision=0, minimum=1, maximum=20)
            with_mos = gr.Checkbox(False, label="Also single-clip MOS tasks")
        sync_btn = gr.Button("Create rating tasks from samples", size="sm")
        gr.Markdown("Gold task: known answer (A/B: A, B, tie, both_bad in stored order; "
                    "MOS: a range like 4-5). Trap: a clip that tells the rater what to "
                    "answer.")
        with gr.Row():
            qc_a = gr.Number(label="Sample A id", precision=0)
            qc_b = gr.Number(label="Sample B id (empty for MOS)", precision=0)
            qc_ans = gr.Textbox(label="Answer")
            qc_trap = gr.Checkbox(False, label="Trap")
        qc_btn = gr.Button("Add QC task", size="sm")
        gr.Markdown("Trap clips: a spoken instruction (\"This is an attention check. "
                    "Please answer: both bad.\") paired with a real continuation; a rater "
                    "who answers otherwise gets all their votes flagged.")
        with gr.Row():
            trap_n = gr.Number(4, label="Trap tasks to add", precision=0, minimum=1,
                               maximum=500, elem_id="admin-trap-n")
            trap_btn = gr.Button("Add trap clips", size="sm", elem_id="admin-add-traps")
        tasks_result = gr.Markdown(elem_id="admin-tasks-result")

    @admin
    def do_sync(sess, per, mos, *, user=None):
        return sync_tasks(rt, user, per, mos)

    @admin
    def do_qc(sess, a, b, ans, trap, *, user=None):
        return add_qc_task(rt, user, a, b, ans, trap)

    @admin
    def do_traps(sess, n, *, user=None):
        return add_trap_tasks(rt, user, n)

    sync_btn.click(do_sync, [session, per_prompt, with_mos], [tasks_result, tasks_md],
                   **PRIVATE)
    qc_btn.click(do_qc, [session, qc_a, qc_b, qc_ans, qc_trap], [tasks_result, tasks_md],
                 **PRIVATE)
    trap_btn.click(do_traps, [session, trap_n], [tasks_result, tasks_md], **PRIVATE)
    return SimpleNamespace(tasks_md=tasks_md)
