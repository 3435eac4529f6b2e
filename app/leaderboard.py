"""Leaderboard: win rates, Bradley-Terry with bootstrap CIs, MOS with 95% CIs, AI-human
agreement and per-round curves, all computed by `backend.leaderboard` (flagged votes excluded
there). Anyone may look."""

from __future__ import annotations

import gradio as gr

from app.admin.judges import trust_table
from app.common import esc, render_any
from backend import leaderboard as lb
from backend.runtime import Runtime

SOURCES = [("All judgments", "all"), ("AI judges", "ai"), ("Human raters", "human")]


def build_leaderboard(rt: Runtime):
    source = gr.Radio(SOURCES, value="all", label="Judgments from", elem_id="lb-source")
    refresh = gr.Button("Refresh", size="sm", elem_id="lb-refresh")
    board = gr.Markdown(elem_id="lb-board")
    with gr.Accordion("AI-human agreement", open=False):
        agree = gr.Markdown()
    trust_md = judge_trust_section()
    with gr.Accordion("Per-round curves", open=False):
        curves = gr.Markdown()
        gallery = gr.Gallery(label="Per-round curves", columns=2, height="auto",
                             buttons=["download"])

    def show(src):
        """Each part on its own, so one failing computation still leaves the others shown."""
        out, images = [], None
        for name, call in (("leaderboard", lambda: lb.leaderboard(rt, src)),
                           ("agreement", lambda: lb.agreement(rt)),
                           ("judge trust", lambda: trust_table(rt)),
                           ("round curves", lambda: lb.round_curves(rt))):
            try:
                res = call()
                if name == "round curves":
                    images = [str(p) for p in res] or None
                    out.append("" if images else "_no rounds evaluated yet_")
                    continue
                out.append(res if isinstance(res, str) else render_any(res))
            except Exception as e:  # noqa: BLE001 - show the reason, keep the page
                out.append(f"**{esc(name)} failed:** {esc(type(e).__name__)}: {esc(e)}")
        return (*out, images)

    outs = [board, agree, trust_md, curves, gallery]
    refresh.click(show, [source], outs, api_name="leaderboard")
    source.change(show, [source], outs, api_visibility="private")
    return show, source, outs


def judge_trust_section() -> gr.Markdown:
    """How far each AI judge agrees with people (kappa and Spearman against the human majority,
    95% CIs, n, per round): shown to everyone, since it says how far an AI-judged row can be
    believed. The table is `app.admin.judges.trust_table`, the same as Admin's."""
    with gr.Accordion("Judge trust (agreement with people)", open=False):
        return gr.Markdown(elem_id="lb-judge-trust")
