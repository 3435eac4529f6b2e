"""The round dashboard's and the job monitor's words, from job records as a running round
leaves them (the browser run is tests/app/test_round.py)."""

from __future__ import annotations

from datetime import datetime

from app.admin.dashboard import signature, stage_md
from app.admin.jobs import result_md
from backend.jobs import JobRecord


def _job(progress: float, result: dict, status: str = "running") -> JobRecord:
    now = datetime(2026, 1, 1)
    return JobRecord(7, "round", {}, status, progress, "round 1/1 DPO: DPO step 3/8", "", None,
                     result, False, 1, "w", now, now, None)


def test_stage_eta_is_the_stages_own():
    """The DPO stage spans 40-70 % of the job and started 60 s ago; at 55 % of the job it is
    half done, so about 60 s are left in it (not the whole job's remainder)."""
    stage = {"name": "round 1/1 DPO", "from": 0.4, "to": 0.7, "started": 1000.0}
    text = stage_md(_job(0.55, {"stage": stage}), "dpo", now=1060.0)
    assert "Stage **round 1/1 DPO**: 50.0% done, 1 min 0 s so far, about 1 min 0 s left" in text
    assert "55.0% of the job" in text
    assert "estimating" in stage_md(_job(0.401, {"stage": stage}), "dpo", now=1060.0)


def test_figures_redraw_only_when_a_step_or_the_stage_changes():
    a = _job(0.5, {"train_curve": [{"step": 1, "loss": 0.7}], "stage": {"name": "x"}})
    b = _job(0.6, {"train_curve": [{"step": 1, "loss": 0.7}], "stage": {"name": "x"}})
    c = _job(0.6, {"train_curve": [{"step": 2, "loss": 0.6}], "stage": {"name": "x"}})
    assert signature(a) == signature(b) != signature(c)


def test_job_result_in_words_not_dicts():
    text = result_md({"train_step": 3, "train_max_steps": 8,
                      "train_metrics": {"loss": 0.61234, "rewards/margins": 0.0812},
                      "train_curve": [{"step": 3, "loss": 0.61234}], "n_pairs": 12,
                      "thresholds": {"chosen_min": 4.0, "rejected_max": 2.0},
                      "final_version": "mini-r1"})
    assert "**Training step 3 of 8**: loss 0.612, rewards/margins 0.0812" in text
    assert "thresholds: chosen min 4.00, rejected max 2.00" in text
    assert "final version: mini-r1" in text and "{" not in text
