"""The runtime: settings + store + lazily built speech components, handed to every service.

Services take a Runtime, so the CLI, the job worker and the web app share one code path, and
tests build a Runtime on a temporary SQLite file (or PostgreSQL) with a tiny world.
"""

from __future__ import annotations

import threading
from functools import cached_property
from typing import Any

from backend.config import Settings, load_settings
from db.session import Store


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

    @property
    def tokenizer(self):
        from models.factory import build_tokenizer

        return self._component("tokenizer", lambda: build_tokenizer(self.settings.models.tokenizer))

    @property
    def unit_lm(self):
        from models.factory import build_unit_lm

        return self._component("unit_lm", lambda: build_unit_lm(self.settings.models.unit_lm))

    @property
    def vocoder(self):
        from models.factory import build_vocoder

        return self._component("vocoder", lambda: build_vocoder(self.settings.models.vocoder))

    @property
    def asr(self):
        from models.factory import build_asr

        return self._component("asr", lambda: build_asr(self.settings.models.asr))

    def judge(self, name: str | None = None):
        """A configured judge by name (default: the first configured)."""
        from models.factory import build_judge

        judges = self.settings.models.judges
        cfg = next((j for j in judges if j.name == name), None) if name else judges[0]
        if cfg is None:
            raise ValueError(f"unknown judge {name!r}; configured: {[j.name for j in judges]}")
        return self._component(f"judge:{cfg.name}", lambda: build_judge(cfg))

    @cached_property
    def lm_lock(self) -> threading.Lock:
        """Serializes use of the unit LM (adapter switching is not thread-safe)."""
        return threading.Lock()

    def forget_components(self) -> None:
        """Drop loaded models (after a bundle rebuild)."""
        with self._lock:
            self._components.clear()

    def close(self) -> None:
        self.store.dispose()
