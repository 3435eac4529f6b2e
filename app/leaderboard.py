"""Leaderboard, in the arenas' form: rank (shared where intervals overlap), version and lineage,
BT score with its 95% CI as +x / -y, win rate vs baseline, MOS per aspect, AI score, votes and
a preliminary badge; a CI plot of the BT scores, the win-rate heatmap, per-round curves of both
judges' scores, the training judge's fault rates and the benchmarks. The numbers come from
`backend.leaderboard` (flagged votes excluded there), written by `backend.formatting`.

Each section is one small function of the leaderboard's result (or of the runtime) with its own
component in `build_leaderboard`; a failing section says why in its place and the others still
show. Anyone may look."""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from app.admin.judges import trust_table
from app.common import esc, html_table
from backend import leaderboard as lb
from backend import plots
from backend.formatting import DASH, num, pct, pm, with_ci
from backend.rating import MOS_ASPECTS as RATED_ASPECTS
from backend.runtime import Runtime

SOURCES = [("All judgments", "all"), ("AI judges", "ai"), ("Human raters", "human")]
SOURCE_NAMES = {v: k for k, v in SOURCES}
ASPECT_LABELS = {"overall": "MOS overall", "meaningfulness": "MOS meaning",
                 "naturalness": "MOS natural"}


def _est(e: dict | None, percent: bool = False) -> str:
    return with_ci(e["value"], e["low"], e["high"], percent) if e and e.get("n") else DASH


def lineage(r: dict) -> str:
    if r["kind"] == "baseline":
        return "baseline"
    return f"round {r['round_index']} from {r['parent']}" if r.get("parent") else \
        f"round {r['round_index']}"


def _aspects(res: dict) -> list[str]:
    seen = {a for r in res["rows"] for a in r["mos"]}
    return [a for a in ("overall", *RATED_ASPECTS) if a in seen or a in RATED_ASPECTS]


def table_rows(res: dict) -> tuple[list[str], list[list[str]]]:
    """The ranking as (header, rows of cell texts); cells are plain text, the version cell may
    carry the preliminary badge (HTML, added by `table_html`)."""
    aspects = _aspects(res)
    header = ["Rank", "Version", "Lineage", "BT score", "95% CI", "Win rate vs baseline",
              *[ASPECT_LABELS[a] for a in aspects], "AI score", "Votes"]
    out = []
    for r in res["rows"]:
        s = r["score"]
        wr = r["win_rate"]
        out.append([
            str(r["rank"]) if r["rank"] else DASH, r["version"], lineage(r),
            num(s["value"]) if s else DASH,
            "reference" if r["kind"] == "baseline" else
            pm(s["value"], s["low"], s["high"]) if s else "",
            "baseline" if r["kind"] == "baseline" else _est(wr, percent=True),
            *[_est(r["mos"].get(a)) for a in aspects],
            _est(r["ai_score"]), str(r["n_judgments"]),
        ])
    return header, out


def table_html(res: dict) -> str:
    header, rows = table_rows(res)
    if not rows:
        return ("<p class='lb-empty'>No version has enough judgments yet (at least "
                f"{res['min_votes']}). Rate on the Rate tab, or let a round's evaluation "
                "judge its samples.</p>")
    badges = [" <span class='lb-badge'>preliminary</span>" if r["preliminary"] else ""
              for r in res["rows"]]
    return html_table(header, rows, extra={1: badges}, elem_class="lb-table")


def summary_md(res: dict) -> str:
    src = SOURCE_NAMES.get(res["source"], res["source"])
    ranked = sum(1 for r in res["rows"] if r["rank"])
    text = (f"**{esc(src)}** · {ranked} version(s) ranked · {res['n_comparisons']} pairwise "
            f"comparisons from {res['n_ab_votes']} A/B votes, {res['n_mos']} MOS ratings and "
            f"{res['n_ai']} AI scores. Versions with fewer than {res['preliminary_votes']} "
            f"judgments are *preliminary*; rank is shared where the 95% intervals overlap.")
    if res["unlisted"]:
        text += ("  \nNot listed yet (fewer than " + str(res["min_votes"]) + " judgments): "
                 + ", ".join(f"{esc(u['version'])} ({u['n_judgments']})"
                             for u in res["unlisted"]) + ".")
    return text


def method_md(res: dict) -> str:
    return (f"<small>BT score: Bradley-Terry strength on the arenas' scale (baseline = 1000, "
            f"+400 = ten times the odds of winning), 95% CI from {res['bootstrap_resamples']} "
            "bootstrap resamples. Win rate: ties count half, both-bad votes excluded, Wilson "
            "95% CI. MOS and AI score (1-5): mean, Student-t 95% CI cut to the scale. AI "
            "comparisons: one per prompt and version pair, the higher mean score wins.</small>")


def bt_figure(res: dict):
    return plots.bt_ci(res["rows"], lb.ELO_BASE)


def heatmap_figure(res: dict):
    m = res["matrix"]
    return plots.win_heatmap(m["versions"], m["share"], m["n"])


def agreement_md(rt: Runtime) -> str:
    """AI judges against people on samples both rated, and people among themselves."""
    res = lb.agreement(rt)
    ai = [[x["judge"], x["aspect"], str(x["n_samples"]), num(x["cohen_kappa"]),
           num(x["cohen_kappa_quadratic"]), num(x["spearman"]), pct(x["exact_agreement"])]
          for x in res["ai_vs_human"]]
    inter = [[x["what"], str(x["raters"]), str(x["units_with_2plus"]),
              num(x.get("alpha_ordinal", x.get("alpha_nominal"))),
              num(x.get("alpha_interval", x.get("fleiss_kappa")))] for x in res["inter_rater"]]
    parts = ["**AI judge vs human MOS** (samples rated by both)",
             html_table(["Judge", "Aspect", "Samples", "Cohen's κ", "κ (quadratic)",
                         "Spearman ρ", "Exact agreement"], ai) if ai
             else "_no sample rated by both yet_",
             "**Among human raters** (Krippendorff's α; for A/B votes nominal α and "
             "Fleiss' κ)",
             html_table(["Ratings", "Raters", "Units rated twice+", "α (ordinal / nominal)",
                         "α interval / Fleiss' κ"], inter) if inter
             else "_no human ratings yet_"]
    return "\n\n".join(parts)


def curve_figures(rt: Runtime) -> list:
    """The per-round panels, in `round_series` order (judge score, fault rate, accuracy)."""
    return [plots.round_curves(name, series) for name, series in lb.round_series(rt).items()]


def _guarded(name: str, call: Callable, fallback):
    """One section's value, or its failure said in words (the other sections still show)."""
    try:
        return call()
    except Exception as e:  # noqa: BLE001 - show the reason, keep the page
        msg = f"**{name} failed:** {esc(type(e).__name__)}: {esc(e)}"
        return fallback(msg)


def build_leaderboard(rt: Runtime):
    with gr.Row(equal_height=True):
        source = gr.Radio(SOURCES, value="all", label="Judgments from", elem_id="lb-source",
                          scale=4)
        refresh = gr.Button("Refresh", size="sm", elem_id="lb-refresh", scale=1,
                            min_width=100)
    summary = gr.Markdown(elem_id="lb-summary")
    board = gr.HTML(elem_id="lb-board")
    method = gr.Markdown(elem_id="lb-method")
    with gr.Row(equal_height=False):
        bt_plot = gr.Plot(label="BT score with 95% CI", show_label=False, elem_id="lb-bt-plot",
                          format="png", min_width=300)
        heat = gr.Plot(label="Win rate between versions", show_label=False,
                       elem_id="lb-heatmap", format="png", min_width=300)
    gr.Markdown("### Per round")
    with gr.Row(equal_height=False, elem_classes=["lb-curves"]):
        curves = [gr.Plot(label=label, show_label=False, elem_id=f"lb-curve-{k}", format="png",
                          min_width=300)
                  for k, label in enumerate(("Judge score", "Fault rate",
                                             "Benchmark accuracy"))]
    with gr.Accordion("AI-human agreement", open=False):
        agree = gr.Markdown(elem_id="lb-agreement")
    trust_md = judge_trust_section()

    def show(src):
        res = _guarded("leaderboard", lambda: lb.leaderboard(rt, src), lambda m: m)
        if isinstance(res, str):  # the ranking failed: say so in its place
            board_out = [res, "", "", None, None]
        else:
            board_out = [summary_md(res), table_html(res), method_md(res),
                         _guarded("BT plot", lambda: bt_figure(res), lambda m: None),
                         _guarded("heatmap", lambda: heatmap_figure(res), lambda m: None)]
        figs = _guarded("round curves", lambda: curve_figures(rt), lambda m: [None] * 3)
        return (*board_out, *figs, _guarded("agreement", lambda: agreement_md(rt), lambda m: m),
                _guarded("judge trust", lambda: trust_table(rt), lambda m: m))

    outs = [summary, board, method, bt_plot, heat, *curves, agree, trust_md]
    refresh.click(show, [source], outs, api_name="leaderboard")
    source.change(show, [source], outs, api_visibility="private")
    return show, source, outs


def judge_trust_section() -> gr.Markdown:
    """How far each AI judge agrees with people (kappa and Spearman against the human majority,
    95% CIs, n, per round): shown to everyone, since it says how far an AI-judged row can be
    believed. The table is `app.admin.judges.trust_table`, the same as Admin's."""
    with gr.Accordion("Judge trust (agreement with people)", open=False):
        return gr.Markdown(elem_id="lb-judge-trust")
