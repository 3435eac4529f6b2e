"""Leaderboard: win rates, Bradley-Terry with bootstrap CIs, MOS with 95% CIs, AI-human
agreement and per-round curves, all computed by `backend.leaderboard` (flagged votes excluded
there). Anyone may look."""

from __future__ import annotations

import gradio as gr

from app.common import esc, not_available, optional, render_any
from backend.runtime import Runtime

SOURCES = [("AI judge", "ai"), ("Human raters", "human"), ("Both", "both")]


def build_leaderboard(rt: Runtime):
    source = gr.Radio(SOURCES, value="ai", label="Judgments from", elem_id="lb-source")
    refresh = gr.Button("Refresh", size="sm", elem_id="lb-refresh")
    board = gr.Markdown(elem_id="lb-board")
    with gr.Accordion("AI-human agreement", open=False):
        agree = gr.Markdown()
    with gr.Accordion("Per-round curves", open=False):
        curves = gr.Markdown()

    def show(src):
        lb = optional("backend.leaderboard")
        if lb is None or not hasattr(lb, "leaderboard"):
            msg = not_available("The leaderboard")
            return msg, msg, msg
        out = []
        for name, call in (("leaderboard", lambda: lb.leaderboard(rt, src)),
                           ("agreement", lambda: lb.agreement(rt)),
                           ("round curves", lambda: lb.round_curves(rt))):
            try:
                out.append(render_any(call()))
            except AttributeError:
                out.append(not_available(name.capitalize()))
            except Exception as e:  # noqa: BLE001 - show the reason, keep the page
                out.append(f"**{esc(name)} failed:** {esc(type(e).__name__)}: {esc(e)}")
        return tuple(out)

    refresh.click(show, [source], [board, agree, curves], api_name="leaderboard")
    source.change(show, [source], [board, agree, curves], api_visibility="private")
    return show, source, [board, agree, curves]
