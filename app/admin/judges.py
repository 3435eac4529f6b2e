"""Admin > Judges: how far each AI judge agrees with people (kappa and Spearman against the
human majority, 95% bootstrap CIs, n; per round) and which training judges a `both`/`auto`
round would use now, and why (`backend.trust`)."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from app.common import ci_text, esc, md_table
from backend import trust
from backend.runtime import Runtime

TRUST_COLUMNS = ["judge", "round", "A/B items", "A/B kappa", "A/B Spearman", "MOS items",
                 "MOS kappa (quadratic)", "MOS Spearman"]
USE_COLUMNS = ["judge", "both", "auto weight", "agreement", "items", "why"]


def trust_table(rt: Runtime) -> str:
    """Every judge's agreement with the human majority, all rounds first, then per round."""
    rows = [{"judge": t.judge, "round": "all" if t.round_index is None else t.round_index,
             "A/B items": t.ab.n, "A/B kappa": ci_text(t.ab.kappa),
             "A/B Spearman": ci_text(t.ab.spearman), "MOS items": t.mos.n,
             "MOS kappa (quadratic)": ci_text(t.mos.kappa),
             "MOS Spearman": ci_text(t.mos.spearman)}
            for t in trust.judge_trust(rt)]
    if not rows:
        return "_no AI judgments yet_"
    return md_table(rows, TRUST_COLUMNS) + position_table(rt)


def position_table(rt: Runtime) -> str:
    """Position bias of the judges that compared pairs in both orders ("" when none did)."""
    rows = [{"judge": b.judge, "pairs asked both ways": b.n,
             "orders disagree": ci_text(b.inconsistent),
             "first shown preferred both times": ci_text(b.first_position)}
            for b in trust.position_bias(rt)]
    if not rows:
        return ""
    return "\n\n**Pairwise verdicts in both orders** (a disagreement counts as "\
        f"{'a tie' if rt.settings.judging.order_conflict == 'tie' else 'dropped'}):\n\n" \
        + md_table(rows)


def gate_table(rt: Runtime) -> str:
    """What a round with pairs from `both` (and `auto`) would use now."""
    cfg = rt.settings.judging
    try:
        both = trust.judges_for_pairs(rt, "both")
        auto = {u.name: u for u in trust.judges_for_pairs(rt, "auto")}
    except Exception as e:  # noqa: BLE001 - a judge that cannot load: say so, keep the tab
        return f"**Cannot check the training judges:** {esc(type(e).__name__)}: {esc(e)}"
    rows = [{"judge": u.judge, "both": "used" if u.used else "not used",
             "auto weight": auto[u.name].weight if u.used else None,
             "agreement": ci_text(u.agreement),
             "items": u.n_items, "why": u.reason} for u in both]
    head = (f"Gate: **{cfg.agreement_metric}** on **{cfg.agreement_on}** items >= "
            f"**{cfg.min_agreement:.3g}** with at least **{cfg.min_overlap}** items "
            "(settings `judging.*`).")
    return head + "\n\n" + md_table(rows, USE_COLUMNS)


def judges_summary(rt: Runtime) -> str:
    return "### Agreement with people\n\n" + trust_table(rt) + \
        "\n\n### Training judges for pairs\n\n" + gate_table(rt)


def build_judges() -> SimpleNamespace:
    with gr.Tab("Judges"):
        gr.Markdown("A/B items: sample pairs with a human majority; the judge's side is its "
                    "pairwise verdict (asked in both orders) or the order of its scores. MOS "
                    "items: samples with meaningfulness ratings against the median rating. "
                    "A round's figures cover items whose newest sample it made.")
        judges_md = gr.Markdown(elem_id="admin-judges")
    return SimpleNamespace(judges_md=judges_md)
