"""Fixtures for the loop tests: a Runtime on a real SQLite file with the tiny stand-in world."""

from __future__ import annotations

import os

import pytest
import torch

from tests.loop import tiny

torch.set_num_threads(2)

slow = pytest.mark.skipif(not os.environ.get("STUDIO_SLOW"), reason="slow: set STUDIO_SLOW=1")


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory):
    return tiny.build_tiny_lm_dir(tmp_path_factory.mktemp("tiny") / "unit_lm")


def tiny_settings(data_dir, lm_dir, judges=("tiny-judge",)):
    from backend.config import Settings
    from models.config import JudgeConfig, ModelsConfig, UnitLMConfig

    return Settings(
        world="real", data_dir=data_dir,
        models=ModelsConfig(unit_lm=UnitLMConfig(kind="hf", path=str(lm_dir), n_units=tiny.K),
                            judges=[JudgeConfig(name=j, kind="mini") for j in judges]),
        generation={"n": 4, "max_new_units": 12, "batch_size": 4, "train_split": "train",
                    "heldout_split": "dev"},
        selection={"chosen_min": 3.0, "rejected_max": 2.5, "min_pairs": 4,
                   "autobleu_max": 0.5},
        dpo={"learning_rate": 5e-3, "lora_rank": 8, "lora_alpha": 16, "max_steps": 12,
             "batch_size": 8, "warmup_ratio": 0.0},
    )


def make_tiny_runtime(data_dir, lm_dir, judges=None, n_train=12, n_dev=4):
    from backend import prompts, registry
    judges = judges or [tiny.TinyJudge()]
    rt = tiny.tiny_runtime_class()(tiny_settings(data_dir, lm_dir, tuple(j.name for j in judges)))
    tiny.install(rt, lm_dir, judges)
    tiny.write_prompt_bundle(rt.settings.bundle_dir, n_train=n_train, n_dev=n_dev)
    prompts.import_bundle_prompts(rt)
    registry.ensure_baseline(rt)
    return rt


@pytest.fixture
def tiny_rt(tmp_path, tiny_lm_dir):
    rt = make_tiny_runtime(tmp_path / "data", tiny_lm_dir)
    yield rt
    rt.close()
