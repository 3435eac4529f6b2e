"""Admin > Training round: start one or more alignment rounds from a parent version by a
training method (DPO on stored preference pairs, online DPO or GRPO on fresh samples the judge
scores as training goes, RFT on the best-judged samples), with the
selection thresholds and the method's settings shown in the form, and list past rounds."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from app.admin import dashboard
from app.admin.base import PRIVATE, whole
from app.common import html_table
from backend import registry
from backend.loop import rounds
from backend.runtime import Runtime
from backend.users import UserInfo


def rounds_table(rt: Runtime) -> str:
    """The newest rounds: what trained what from what, and how it ended."""
    names = {v.id: v.name for v in registry.list_versions(rt)}
    rows = [[str(r.id), r.status, METHOD_LABELS.get(r.method, r.method), r.pair_source,
             str(r.round_index), str(r.n_pairs) if r.method == "dpo" else "–",
             names.get(r.parent_version_id, "?"), names.get(r.result_version_id, "–"),
             judges_text(r.judges) or "–", str(r.job_id or "–"), r.error or ""]
            for r in rounds.list_rounds(rt, 20)]
    if not rows:
        return "<p>No rounds yet.</p>"
    return html_table(["Round", "Status", "Method", "Learns from", "Index", "Pairs", "Parent",
                       "Result", "AI judges", "Job", "Error"], rows)


def judges_text(judges: list[dict]) -> str:
    """Which training judges a round's pairs used and why the others were not ("" if none)."""
    return "; ".join(f"{u['judge']} " + (f"used (weight {u['weight']:.3g})" if u["used"]
                                          else f"not used: {u['reason']}") for u in judges)


def queue_round(rt: Runtime, user: UserInfo, parent: str | None, source: str, n, curriculum,
                method, chosen, rejected, beta, rank, steps, max_prompts,
                per_prompt, finetune="lora") -> tuple[int, str]:
    """Validate the form and queue a "round" job: (job id, message). Every value is sent as an
    explicit setting of the chosen method; a bad one is refused here, before any sampling.
    "Continuations per prompt" is generation's `n` for DPO and RFT and the number each step
    samples for Online DPO and GRPO; "Chosen if score ≥" is RFT's `min_score`; RFT has no
    beta. "Weights" is the method's `finetune` (LoRA rank applies to "lora" only)."""
    overrides = {"method": method, "finetune": finetune, "beta": beta,
                 "lora_rank": whole(rank), "max_steps": whole(steps),
                 "max_prompts": whole(max_prompts)}
    if method in ONLINE:
        overrides["num_generations"] = whole(per_prompt)
    elif method == "rft":
        del overrides["beta"]
        overrides.update(min_score=chosen, n=whole(per_prompt))
    else:
        overrides.update(chosen_min=chosen, rejected_max=rejected, n=whole(per_prompt))
    try:
        jid = rounds.start_round(rt, parent or None, source, int(n or 1), bool(curriculum),
                                 overrides, user_id=user.id)
    except Exception as e:  # noqa: BLE001 - validation errors are shown as they are
        raise gr.Error(f"Cannot start the round: {e}") from None
    return jid, f"{METHOD_LABELS.get(method, method)} round queued as job **{jid}**; " \
        "watching it below."


METHOD_LABELS = {"dpo": "DPO", "online-dpo": "Online DPO", "grpo": "GRPO", "rft": "RFT"}
ONLINE = ("online-dpo", "grpo")
"""Methods whose trainer samples `num_generations` continuations per prompt itself."""


def method_defaults(rt: Runtime, method: str) -> tuple:
    """The form's method-dependent values: beta, LoRA rank, steps, continuations per prompt,
    weights (finetune)."""
    opts = rounds.round_options(rt)
    m = opts[method]
    per_prompt = m["num_generations"] if method in ONLINE else opts["generation"]["n"]
    return m.get("beta", 0.0), m["lora_rank"], m["max_steps"], per_prompt, m["finetune"]


def build_rounds(rt: Runtime) -> SimpleNamespace:
    """The DPO round tab. Its button sets the monitor's job id, so `build_admin` wires it."""
    with gr.Tab("Training round"):
        opts = rounds.round_options(rt)
        with gr.Row():
            parent = gr.Dropdown([], label="Parent version", elem_id="round-parent")
            method = gr.Radio([(METHOD_LABELS[m], m) for m in opts["methods"]],
                              value=opts["method"], label="Method", elem_id="round-method",
                              info="DPO: the paper's, on stored pairs (AI or human). Online "
                                   "DPO: pairs of fresh samples the AI judge scores as it "
                                   "trains. GRPO: online, every fresh sample pushed by its "
                                   "score. RFT: imitate the best-judged samples.")
            source = gr.Radio([("AI judge", "ai"), ("Human votes", "human"), ("Both", "both"),
                               ("Auto (judges weighted by agreement)", "auto")],
                              value="ai", label="Pairs from",
                              info="Both and Auto use only the AI judges that agree with "
                                   "people enough (Admin > Judges).")
            n_rounds = gr.Number(1, label="Rounds", precision=0, minimum=1, maximum=10)
            curriculum = gr.Checkbox(True, label="Curriculum (raise thresholds each round)")
        # the effective values (the mini world's overrides included): what is shown is sent
        # back as an explicit setting, so it must be what the round would use anyway
        sel, gen = opts["selection"], opts["generation"]
        beta0, rank0, steps0, per0, finetune0 = method_defaults(rt, opts["method"])
        with gr.Row():
            chosen = gr.Number(sel["chosen_min"], label="Chosen if score ≥ (DPO)")
            rejected = gr.Number(sel["rejected_max"], label="Rejected if score ≤ (DPO)")
            beta = gr.Number(beta0, label="beta (DPO, Online DPO) / KL coefficient (GRPO)",
                             elem_id="round-beta")
            rank = gr.Number(rank0, label="LoRA rank", precision=0)
            steps = gr.Number(steps0, label="Steps", precision=0, elem_id="round-steps")
        with gr.Row():
            max_prompts = gr.Number(gen["max_prompts"] or 0, label="Prompts per round (0 = all)",
                                    precision=0, minimum=0, elem_id="round-prompts")
            per_prompt = gr.Number(per0, label="Continuations per prompt", precision=0,
                                   minimum=2, maximum=20, elem_id="round-n")
            finetune = gr.Radio([("LoRA adapter", "lora"), ("Full fine-tuning", "full")],
                                value=finetune0, label="Weights", elem_id="round-finetune",
                                info="Full: every weight trains; the version is a whole model "
                                     "(as large as the base in memory when sampled).")
        start = gr.Button("Start round", variant="primary", elem_id="round-start")
        result = gr.Markdown(elem_id="round-result")
        dash = dashboard.build_dashboard()
        gr.Markdown("### Rounds")
        rounds_md = gr.HTML(elem_id="admin-rounds")
    method.change(lambda m: method_defaults(rt, m), [method],
                  [beta, rank, steps, per_prompt, finetune], **PRIVATE)
    form = [parent, source, n_rounds, curriculum, method, chosen, rejected, beta, rank, steps,
            max_prompts, per_prompt, finetune]
    return SimpleNamespace(parent=parent, form=form, start=start, result=result,
                           rounds_md=rounds_md, dash=dash)
