"""Admin > DPO round: start one or more alignment rounds from a parent version, with the
selection thresholds and DPO settings shown in the form, and list past rounds."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from app.admin.base import whole
from app.common import md_table
from backend.loop import rounds
from backend.runtime import Runtime
from backend.users import UserInfo

ROUND_COLUMNS = ["id", "status", "pair_source", "round_index", "n_pairs", "parent_version_id",
                 "result_version_id", "job_id", "error"]


def rounds_table(rt: Runtime) -> str:
    return md_table([r.as_dict() for r in rounds.list_rounds(rt, 20)], ROUND_COLUMNS)


def queue_round(rt: Runtime, user: UserInfo, parent: str | None, source: str, n, curriculum,
                chosen, rejected, beta, rank, steps, max_prompts,
                per_prompt) -> tuple[int, str]:
    """Validate the form and queue a "round" job: (job id, message). Every value is sent as an
    explicit setting; a bad one is refused here, before any sampling."""
    overrides = {"chosen_min": chosen, "rejected_max": rejected, "beta": beta,
                 "lora_rank": whole(rank), "max_steps": whole(steps),
                 "max_prompts": whole(max_prompts), "n": whole(per_prompt)}
    try:
        jid = rounds.start_round(rt, parent or None, source, int(n or 1), bool(curriculum),
                                 overrides, user_id=user.id)
    except Exception as e:  # noqa: BLE001 - validation errors are shown as they are
        raise gr.Error(f"Cannot start the round: {e}") from None
    return jid, f"DPO round queued as job **{jid}**; watching it below."


def build_rounds(rt: Runtime) -> SimpleNamespace:
    """The DPO round tab. Its button sets the monitor's job id, so `build_admin` wires it."""
    with gr.Tab("DPO round"):
        with gr.Row():
            parent = gr.Dropdown([], label="Parent version", elem_id="round-parent")
            source = gr.Radio([("AI judge", "ai"), ("Human votes", "human"), ("Both", "both")],
                              value="ai", label="Pairs from")
            n_rounds = gr.Number(1, label="Rounds", precision=0, minimum=1, maximum=10)
            curriculum = gr.Checkbox(True, label="Curriculum (raise thresholds each round)")
        # the effective values (the mini world's DPO overrides included): what is shown is sent
        # back as an explicit setting, so it must be what the round would use anyway
        opts = rounds.round_options(rt)
        sel, dpo, gen = opts["selection"], opts["dpo"], opts["generation"]
        with gr.Row():
            chosen = gr.Number(sel["chosen_min"], label="Chosen if score ≥")
            rejected = gr.Number(sel["rejected_max"], label="Rejected if score ≤")
            beta = gr.Number(dpo["beta"], label="DPO beta")
            rank = gr.Number(dpo["lora_rank"], label="LoRA rank", precision=0)
            steps = gr.Number(dpo["max_steps"], label="Steps", precision=0,
                              elem_id="round-steps")
        with gr.Row():
            max_prompts = gr.Number(gen["max_prompts"] or 0, label="Prompts per round (0 = all)",
                                    precision=0, minimum=0, elem_id="round-prompts")
            per_prompt = gr.Number(gen["n"], label="Continuations per prompt", precision=0,
                                   minimum=2, maximum=20, elem_id="round-n")
        start = gr.Button("Start DPO round", variant="primary", elem_id="round-start")
        result = gr.Markdown(elem_id="round-result")
        rounds_md = gr.Markdown()
    form = [parent, source, n_rounds, curriculum, chosen, rejected, beta, rank, steps,
            max_prompts, per_prompt]
    return SimpleNamespace(parent=parent, form=form, start=start, result=result,
                           rounds_md=rounds_md)
