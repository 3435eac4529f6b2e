"""Admin > Training round > Round dashboard: the round job being watched (or the newest one) as
it runs — the stage it is in with that stage's own ETA, the method's live training curves (DPO:
loss, reward margin, reward accuracy; GRPO: reward, loss, KL; RFT: loss, token accuracy), what
the round trains on (the pairs DPO kept, by score margin; the samples RFT imitates, by score) —
and once it is done the held-out metrics before and after, with their 95% CIs. The job monitor's
timer polls it; figures are redrawn only when something they show changed."""

from __future__ import annotations

import time
from types import SimpleNamespace

import gradio as gr

from app.common import esc, html_table
from backend import jobs, plots, queries, registry
from backend import leaderboard as lb
from backend.formatting import DASH, num, pct, with_ci
from backend.jobs import JobRecord
from backend.loop import rounds
from backend.loop.evaluate import compare_versions, latest_results
from backend.runtime import Runtime

CURVES = {
    "dpo": (("loss", "loss"), ("rewards/margins", "reward margin"),
            ("rewards/accuracies", "reward accuracy")),
    "grpo": (("reward", "reward"), ("loss", "loss"), ("kl", "KL to parent")),
    "rft": (("loss", "loss"), ("mean_token_accuracy", "token accuracy")),
}
"""Per training method, the logged metrics its live curves show (keys of models.training's
reports) and their labels."""


def round_job(rt: Runtime, watched) -> JobRecord | None:
    """The watched job if it is a round, else the newest round job."""
    if watched not in (None, "", 0):
        try:
            j = jobs.get(rt, int(watched))
            if j.kind == "round":
                return j
        except ValueError:
            pass
    return next((j for j in jobs.list_jobs(rt, 100) if j.kind == "round"), None)


def job_rounds(rt: Runtime, job: JobRecord) -> list[rounds.RoundRecord]:
    return sorted((r for r in rounds.list_rounds(rt, 100) if r.job_id == job.id),
                  key=lambda r: r.id)


def method_of(rt: Runtime, job: JobRecord, rr: list[rounds.RoundRecord]) -> str:
    if rr:
        return rr[-1].method
    return (job.params.get("overrides") or {}).get("method") or rt.settings.training.method


def duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600} h {s % 3600 // 60} min" if s >= 3600 else \
        f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


def stage_md(job: JobRecord, method: str, now: float | None = None) -> str:
    """Status, stage and the stage's own ETA (from its share of the job and its start)."""
    head = (f"**Round job {job.id}** ({esc(method.upper())}): **{esc(job.status)}**, "
            f"{pct(job.progress)} of the job")
    stage = job.result.get("stage")
    if job.status == "running" and stage:
        now = time.time() if now is None else now
        span = max(1e-9, stage["to"] - stage["from"])
        within = min(1.0, max(0.0, (job.progress - stage["from"]) / span))
        elapsed = max(0.0, now - stage["started"])
        eta = (f"about {duration(elapsed * (1 - within) / within)} left in this stage"
               if within >= 0.02 and elapsed > 1 else "estimating time left")
        head += (f"  \nStage **{esc(stage['name'])}**: {pct(within)} done, "
                 f"{duration(elapsed)} so far, {eta}.")
    if job.message:
        head += f"  \n{esc(job.message)}"
    if job.error:
        head += f"  \n**Error:** {esc(job.error)}"
    return head


def curves_figure(job: JobRecord, method: str):
    return plots.training_curves(job.result.get("train_curve") or [],
                                 CURVES.get(method, CURVES["dpo"]),
                                 f"{method.upper()} training, live")


def _training_scores(rt: Runtime, sample_ids: list[int]) -> list[float]:
    """Mean training-judge score of each sample."""
    trains = {name for name, t in lb.judges_by_role(rt).items() if t}
    per: dict[int, list[float]] = {}
    with rt.store.read() as s:
        for a in queries.ai_scores(s, sample_ids=sample_ids):
            if a.judge.split("@", 1)[0] in trains:
                per.setdefault(a.sample_id, []).append(a.value)
    return [sum(v) / len(v) for v in per.values()]


def data_figure(rt: Runtime, rr: list[rounds.RoundRecord], method: str):
    """What the newest round of the job trains on: DPO's kept pairs by score margin, RFT's
    imitated samples by score; GRPO keeps nothing (it scores fresh samples as it trains)."""
    if not rr:
        return plots.histogram([], "Training data", "")
    r = rr[-1]
    if method == "dpo":
        margins = [p["margin"] for p in rounds.round_pairs(rt, r.id) if p["margin"] is not None]
        sel = r.selection
        return plots.histogram(
            margins, f"{len(margins)} pairs kept (chosen ≥ {num(sel.get('chosen_min'))}, "
            f"rejected ≤ {num(sel.get('rejected_max'))})", "score margin (chosen - rejected)")
    if method == "rft":
        ids = r.metrics.get("imitated_sample_ids") or []
        return plots.histogram(_training_scores(rt, ids), f"{len(ids)} samples imitated",
                               "training judge score", bins=[0.5, 1.5, 2.5, 3.5, 4.5, 5.5])
    return plots.histogram([], "GRPO keeps no pairs (it scores fresh samples while it trains)",
                           "")


def _metric_label(rt: Runtime, bench: str, metric: str) -> str:
    if bench.startswith("judge:"):
        return f"judge score, {lb.judge_label(rt, bench[len('judge:'):])}"
    return f"{bench} {metric.replace('_', ' ')}"


def before_after_html(rt: Runtime, rr: list[rounds.RoundRecord]) -> str:
    """Held-out metrics of the newest finished round's parent and result, each with its 95%
    CI, and the result's change vs the baseline on the same items (paired bootstrap CI)."""
    done = [r for r in rr if r.status == "done" and r.result_version_id]
    if not done:
        return "<p>The before/after table appears when the round has finished.</p>"
    r = done[-1]
    split = rt.settings.generation.heldout_split
    latest = latest_results(rt, split)
    new = registry.get_version(rt, r.result_version_id)
    parent = registry.get_version(rt, r.parent_version_id)
    diffs = {(d["benchmark"], d["metric"]): d for d in compare_versions(rt, split, 1000)
             if d["version"] == new.name}
    rows = []
    for (vid, bench, metric), after in sorted(latest.items(), key=lambda kv: kv[0][1:]):
        if vid != new.id or metric not in ("accuracy", "mean_score"):
            continue
        before = latest.get((parent.id, bench, metric))
        percent = metric == "accuracy"
        d = diffs.get((bench, metric))
        rows.append([
            _metric_label(rt, bench, metric),
            with_ci(before["value"], before["ci_low"], before["ci_high"], percent)
            if before else DASH,
            with_ci(after["value"], after["ci_low"], after["ci_high"], percent),
            (with_ci(d["diff"], d["ci_low"], d["ci_high"], percent) if d else DASH),
        ])
    if not rows:
        return f"<p>{esc(new.name)} has no held-out evaluation yet.</p>"
    return (f"<p><b>Held-out ({esc(split)}) before and after round {r.round_index}</b>: "
            f"{esc(parent.name)} → {esc(new.name)}, 95% CIs.</p>"
            + html_table(["Metric", f"Before ({parent.name})", f"After ({new.name})",
                          "Change vs baseline (paired)"], rows, elem_class="dash-table"))


def signature(job: JobRecord | None) -> tuple:
    """What the figures show: they are redrawn only when this changes."""
    if job is None:
        return ()
    curve = job.result.get("train_curve") or [{}]
    return (job.id, job.status, curve[-1].get("step"),
            (job.result.get("stage") or {}).get("name"), job.result.get("round_id"))


def dashboard(rt: Runtime, watched, last: tuple | None) -> tuple:
    """(stage text, curves, training data, before/after, signature); the figures and table
    as `gr.skip()` when their signature is unchanged."""
    job = round_job(rt, watched)
    if job is None:
        return ("No training round yet: start one above.", None, None, "", ())
    rr = job_rounds(rt, job)
    method = method_of(rt, job, rr)
    sig = signature(job)
    if tuple(last or ()) == sig:
        return stage_md(job, method), gr.skip(), gr.skip(), gr.skip(), sig
    return (stage_md(job, method), curves_figure(job, method), data_figure(rt, rr, method),
            before_after_html(rt, rr), sig)


def build_dashboard() -> SimpleNamespace:
    """The dashboard's components (inside the Training round tab); `build_admin` wires the
    monitor's timer to it."""
    gr.Markdown("### Round dashboard")
    stage = gr.Markdown(elem_id="dash-stage")
    curves = gr.Plot(label="Training curves", elem_id="dash-curves", format="png")
    with gr.Row(equal_height=False):
        data = gr.Plot(label="Training data", elem_id="dash-data", format="png", min_width=300)
        table = gr.HTML(elem_id="dash-before-after", min_height=0)
    sig = gr.State(())
    return SimpleNamespace(outputs=[stage, curves, data, table, sig], sig=sig)
