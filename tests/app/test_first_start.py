"""The app's first start on a fresh world queues what makes Listen useful without anyone
acting: baseline samples, their judging, then one default training round."""

from __future__ import annotations

from backend import jobs, registry
from tests.loop.conftest import make_tiny_runtime, tiny_lm_dir  # noqa: F401 - fixture


def with_test_prompts(rt, n: int = 2):
    """Seeding samples the `test` split: move n of the tiny world's dev prompts there."""
    from db.schema import Prompt

    with rt.store.session() as s:
        for p in s.query(Prompt).filter(Prompt.split == "dev").limit(n):
            p.split = "test"
    return rt


def test_first_start_queues_samples_judging_and_one_round(tmp_path, tiny_lm_dir):  # noqa: F811
    from app.__main__ import queue_first_samples

    rt = with_test_prompts(make_tiny_runtime(tmp_path / "data", tiny_lm_dir))
    try:
        base = registry.ensure_baseline(rt).name
        ids = queue_first_samples(rt, base)
        kinds = [jobs.get(rt, i).kind for i in ids]
        assert kinds == ["generate", "judge", "round"]
        assert jobs.get(rt, ids[2]).params["parent"] == base
        assert queue_first_samples(rt, base) == []  # a second start queues nothing again
    finally:
        rt.close()


def test_first_round_can_be_switched_off(tmp_path, tiny_lm_dir):  # noqa: F811
    from app.__main__ import queue_first_samples

    rt = with_test_prompts(make_tiny_runtime(tmp_path / "data", tiny_lm_dir))
    try:
        rt.settings.server.first_round = False
        ids = queue_first_samples(rt, registry.ensure_baseline(rt).name)
        assert [jobs.get(rt, i).kind for i in ids] == ["generate", "judge"]
    finally:
        rt.close()


def test_real_world_start_names_its_baseline_and_prompts_not_a_bundle(tmp_path,
                                                                      tiny_lm_dir):  # noqa: F811
    """The real world has no bundle to bootstrap: start-up registers the configured LM as the
    baseline and reports the stored prompts, or how to import some (it said "no bundle: run
    python -m backend bootstrap")."""
    from app.__main__ import startup
    from db.schema import Prompt

    rt = make_tiny_runtime(tmp_path / "data", tiny_lm_dir)
    try:
        rt.settings.server.seed_samples = 0
        with rt.store.session() as s:
            s.query(Prompt).delete()
        report = startup(rt)
        assert "bootstrap" not in str(report) and "problems" not in report
        assert report["baseline"] == registry.ensure_baseline(rt).name
        assert "import-prompts --bundle PROMPTS.jsonl --split train" in report["prompts"]
        from backend import prompts

        prompts.import_bundle_prompts(rt)
        rt.settings.server.seed_samples = 4
        again = startup(rt)
        assert again["prompts"] == {"stored": 16}
        # own prompts in train/dev only: no seeding job that would fail for want of test ones
        assert again["seeding_jobs"] == [] and jobs.list_jobs(rt) == []
    finally:
        rt.close()
