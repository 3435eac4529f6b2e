"""The runtime: settings + store + lazily built speech components, handed to every service.

Services take a Runtime, so the CLI, the job worker and the web app share one code path, and
tests build a Runtime on a temporary SQLite file (or PostgreSQL) with a tiny world.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.config import Settings, load_settings
from db.session import Store

if TYPE_CHECKING:
    from backend.registry import Version


class AdapterCorruptError(RuntimeError):
    """A registered adapter on disk no longer matches its recorded hash."""


class UnitLayoutError(RuntimeError):
    """The tokenizer, unit LM and vocoder do not agree on the units."""


class Runtime:
    def __init__(self, settings: Settings | None = None, upgrade: bool = True):
        self.settings = settings or load_settings()
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.settings.database_url)
        if upgrade:
            self.store.upgrade()
        self._lock = threading.RLock()
        self._components: dict[str, Any] = {}
        self._units_agree = False

    def _component(self, key: str, build):
        with self._lock:
            if key not in self._components:
                self._components[key] = build()
            return self._components[key]

    def _built(self, key: str):
        """A component built by models.factory from its config section, once."""
        cfg = getattr(self.settings.models, key)
        return self._component(key, lambda: getattr(_factory(), f"build_{key}")(cfg))

    @property
    def tokenizer(self):
        return self._built("tokenizer")

    @property
    def unit_lm(self):
        return self._built("unit_lm")

    @property
    def vocoder(self):
        return self._built("vocoder")

    @property
    def asr(self):
        return self._built("asr")

    def check_unit_layout(self) -> None:
        """Before units flow tokenizer -> unit LM -> vocoder: the LM must model exactly the
        tokenizer's units (K k-means centres) and the vocoder must have an embedding for each
        unit the LM samples. A mismatch (a k-means of another K, a vocoder for another LM)
        would otherwise give wrong speech or an index error deep inside a model. Components
        that do not say how many units they have are not checked."""
        if self._units_agree:
            return
        k_tok = getattr(self.tokenizer, "vocab_size", None)
        k_lm = getattr(self.unit_lm, "vocab_size", None)
        k_voc = getattr(self.vocoder, "num_units", None)
        problems = []
        if k_tok is not None and k_lm is not None and k_tok != k_lm:
            problems.append(f"the tokenizer makes {k_tok} units but the unit LM models {k_lm} "
                            "(models.unit_lm.n_units or the LM directory's unit layout)")
        if k_lm is not None and k_voc is not None and k_voc < k_lm:
            problems.append(f"the unit LM samples units 0..{k_lm - 1} but the vocoder has "
                            f"embeddings for {k_voc} (num_embeddings in its JSON config)")
        if problems:
            raise UnitLayoutError("speech components disagree on the units: "
                                  + "; ".join(problems))
        self._units_agree = True

    def judge(self, name: str | None = None):
        """A configured judge by name (default: the first that trains)."""
        judges = self.settings.models.judges
        cfg = next((j for j in judges if j.name == name), None) if name else \
            next((j for j in judges if j.trains), None)
        if cfg is None and not name:
            raise ValueError("no judge with trains = true is configured")
        if cfg is None:
            raise ValueError(f"unknown judge {name!r}; configured: {[j.name for j in judges]}")
        return self._component(f"judge:{cfg.name}", lambda: _factory().build_judge(cfg))

    def lm(self, version: Version):
        """The unit LM holding the weights `version` applies to (`version.base_ref`): the
        configured one for the baseline's lineage, or, from a fully fine-tuned version on (its
        base_ref is its checkpoint directory), that model directory loaded once as a unit LM
        of its own with the configured unit LM's settings. Each such model stays in memory
        like the base (for TWIST-7B ~14-28 GB each)."""
        cfg = self.settings.models.unit_lm
        if not Path(version.base_ref or "/").is_relative_to(self.settings.checkpoints_dir):
            return self.unit_lm

        def load():
            if version.finetune == "full" and not version.adapter_intact():
                raise AdapterCorruptError(
                    f"weights of {version.name} at {version.adapter_path} are missing or differ "
                    f"from the hash recorded at registration; they are not loaded")
            return _factory().build_unit_lm(cfg.model_copy(update={"path": version.base_ref}))

        return self._component(f"unit_lm:{version.base_ref}", load)

    def adapter(self, version: Version) -> str | None:
        """The adapter name to pass to `lm(version)` for a model version, loading it there once
        (name = version name); None for the baseline and for a fully fine-tuned version (its
        weights are its LM's own). Each aligned LoRA version's adapter applies directly on its
        base_ref (see models.training)."""
        if not version.adapters:
            return None
        name = version.name

        def load():
            if not version.adapter_intact():
                raise AdapterCorruptError(
                    f"adapter of {name} at {version.adapter_path} is missing or differs from "
                    f"the hash recorded at registration; it is not loaded")
            self.lm(version).load_adapter(name, version.adapter_path)
            return name

        return self._component(f"adapter:{name}", load)

    def forget_components(self) -> None:
        """Drop loaded models (after a bundle rebuild)."""
        with self._lock:
            self._components.clear()
            self._units_agree = False

    def close(self) -> None:
        self.store.dispose()


def _factory():
    """models.factory, imported on first use (it pulls in torch; the CLI's light commands and
    tests that hand in their own components don't need it)."""
    import models.factory

    return models.factory
