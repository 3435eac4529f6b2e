"""The app's first start on a fresh world queues what makes Listen useful without anyone
acting: baseline samples, their judging, then one default training round."""

from __future__ import annotations

from backend import jobs, registry
from tests.loop.conftest import make_tiny_runtime, tiny_lm_dir  # noqa: F401 - fixture


def test_first_start_queues_samples_judging_and_one_round(tmp_path, tiny_lm_dir):  # noqa: F811
    from app.__main__ import queue_first_samples

    rt = make_tiny_runtime(tmp_path / "data", tiny_lm_dir)
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

    rt = make_tiny_runtime(tmp_path / "data", tiny_lm_dir)
    try:
        rt.settings.server.first_round = False
        ids = queue_first_samples(rt, registry.ensure_baseline(rt).name)
        assert [jobs.get(rt, i).kind for i in ids] == ["generate", "judge"]
    finally:
        rt.close()
