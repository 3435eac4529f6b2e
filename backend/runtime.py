"""The runtime: settings + store + lazily built speech components, handed to every service.

Services take a Runtime, so the CLI, the job worker and the web app share one code path, and
tests build a Runtime on a temporary SQLite file (or PostgreSQL) with a tiny world.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from backend.config import Settings, load_settings
from db.session import Store

if TYPE_CHECKING:
    from backend.registry import Version


class AdapterCorruptError(RuntimeError):
    """A registered adapter on disk no longer matches its recorded hash."""


class Runtime:
    def __init__(self, settings: Settings | None = None, upgrade: bool = True):
        self.settings = settings or load_settings()
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.settings.database_url)
        if upgrade:
            self.store.upgrade()
        self._lock = threading.RLock()
        self._components: dict[str, Any] = {}

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

    def adapter(self, version: Version) -> str | None:
        """The adapter name to pass to the unit LM for a model version, loading it into the
        shared LM once (name = version name); None for the baseline. Each aligned version's
        adapter applies directly on the base weights (see backend.training)."""
        if version.kind == "baseline" or not version.adapter_path:
            return None
        name = version.name

        def load():
            if not version.adapter_intact():
                raise AdapterCorruptError(
                    f"adapter of {name} at {version.adapter_path} is missing or differs from "
                    f"the hash recorded at registration; it is not loaded")
            self.unit_lm.load_adapter(name, version.adapter_path)
            return name

        return self._component(f"adapter:{name}", load)

    def forget_components(self) -> None:
        """Drop loaded models (after a bundle rebuild)."""
        with self._lock:
            self._components.clear()

    def close(self) -> None:
        self.store.dispose()


def _factory():
    """models.factory, imported on first use (it pulls in torch; the CLI's light commands and
    tests that hand in their own components don't need it)."""
    import models.factory

    return models.factory
