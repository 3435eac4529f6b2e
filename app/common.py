"""Small helpers shared by the tabs."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

PLAYER = gr.WaveformOptions(show_recording_waveform=False)
"""The browser's own audio player: accessible, keyboard-friendly, and its `<audio>` element is in
the page (the waveform player hides it)."""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def md_table(rows: list[dict], columns: list[str] | None = None, limit: int = 200) -> str:
    """A Markdown table of dict rows (values escaped)."""
    if not rows:
        return "_nothing yet_"
    cols = columns or list(rows[0].keys())
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows[:limit]:
        out.append("| " + " | ".join(_cell(r.get(c)) for c in cols) + " |")
    if len(rows) > limit:
        out.append(f"\n_{len(rows) - limit} more rows not shown_")
    return "\n".join(out)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, dict | list):
        import json

        v = json.dumps(v, default=str)
        v = v if len(v) < 80 else v[:77] + "..."
    return esc(v).replace("|", "\\|").replace("\n", " ")


def render_any(obj: Any, level: int = 3) -> str:
    """Render a JSON-like result (dicts of tables, numbers, text) as Markdown."""
    if obj is None:
        return "_nothing yet_"
    if isinstance(obj, list):
        if obj and all(isinstance(x, dict) for x in obj):
            return md_table(obj)
        return ", ".join(esc(x) for x in obj) or "_empty_"
    if isinstance(obj, dict):
        parts = []
        scalars = {k: v for k, v in obj.items() if not isinstance(v, dict | list)}
        if scalars:
            parts.append(md_table([{"field": k, "value": v} for k, v in scalars.items()]))
        for k, v in obj.items():
            if isinstance(v, dict | list):
                parts.append(f"{'#' * level} {esc(k).replace('_', ' ')}\n\n"
                             + render_any(v, min(level + 1, 6)))
        return "\n\n".join(parts) or "_empty_"
    return esc(obj)


def ci_text(est: Any) -> str:
    """An estimate (an object or dict with value/low/high) as "0.453 [0.284, 0.612]" (3 significant
    digits); "" when there is none."""
    if est is None:
        return ""
    value, low, high = ((est["value"], est["low"], est["high"]) if isinstance(est, dict)
                        else (est.value, est.low, est.high))
    text = f"{value:.3g}"
    if low is not None and high is not None:
        text += f" [{low:.3g}, {high:.3g}]"
    return text
