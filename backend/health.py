"""Start-up health check: which model file or adapter on disk is unusable, and how to fix it.

A corrupt bundle or checkpoint must not stop the app (raters can still vote on stored samples),
but it must be named, with the command that repairs it, instead of surfacing later as a
stack trace inside a job. `check(rt)` loads every configured component once (the Runtime keeps
the loaded ones, so the worker does not pay twice) and re-hashes each registered adapter against
the hash recorded when it was registered.
"""

from __future__ import annotations

from backend import registry
from backend.runtime import Runtime

COMPONENTS = ("tokenizer", "unit_lm", "vocoder", "asr")
REBUILD = "rebuild the mini world with `python -m backend bootstrap --force`"


def _fix(rt: Runtime, section: str) -> str:
    if rt.settings.world == "mini":
        return REBUILD
    return f"check the file named above, or the path in the config section [models.{section}]"


def _component_path(cfg) -> str:
    return str(getattr(cfg, "path", "") or getattr(cfg, "checkpoint", "") or "")


def check_components(rt: Runtime) -> list[dict]:
    """One problem per component (and judge) that fails to load: component, path, error, fix."""
    problems = []
    for key in COMPONENTS:
        try:
            getattr(rt, key)
        except Exception as e:  # noqa: BLE001 - any load failure is reported, not raised
            problems.append({"component": key,
                             "path": _component_path(getattr(rt.settings.models, key)),
                             "error": f"{type(e).__name__}: {e}", "fix": _fix(rt, key)})
    for cfg in rt.settings.models.judges:
        try:
            rt.judge(cfg.name)
        except Exception as e:  # noqa: BLE001
            problems.append({"component": f"judge {cfg.name}", "path": _component_path(cfg),
                             "error": f"{type(e).__name__}: {e}", "fix": _fix(rt, "judges")})
    return problems


def check_adapters(rt: Runtime) -> list[dict]:
    """Aligned versions whose adapter directory is missing or no longer matches its hash."""
    problems = []
    for v in registry.list_versions(rt):
        if v.adapter_path and not v.adapter_intact():
            problems.append({
                "component": f"adapter of {v.name}", "path": v.adapter_path,
                "error": "adapter files are missing or differ from the hash recorded at "
                         "registration",
                "fix": f"do not use {v.name}: retrain it with a new round from its parent "
                       f"(its parent and other versions are unaffected)"})
    return problems


def check(rt: Runtime) -> list[dict]:
    """All problems found; empty when every model file and adapter is usable."""
    return check_components(rt) + check_adapters(rt)


def describe(problems: list[dict]) -> str:
    """Problems as console/Markdown lines."""
    return "\n".join(f"- {p['component']} ({p['path'] or 'no path'}): {p['error']} -> {p['fix']}"
                     for p in problems)
