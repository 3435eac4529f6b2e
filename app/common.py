"""Small helpers shared by the tabs."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from backend.formatting import num

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


def plain(v: Any) -> str:
    """A value as words and numbers for a cell: floats with 3 significant digits, a mapping as
    "key value, ..." and a list joined by commas (never a dict's or list's repr)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return num(v)
    if isinstance(v, dict):
        return ", ".join(f"{str(k).replace('_', ' ')} {plain(x)}" for k, x in v.items())
    if isinstance(v, list | tuple):
        return ", ".join(plain(x) for x in v)
    return str(v)


def _cell(v: Any) -> str:
    text = plain(v)
    text = text if len(text) < 120 else text[:117] + "..."
    return esc(text).replace("|", "\\|").replace("\n", " ")


def html_table(header: list[str], rows: list[list[str]], extra: dict[int, list[str]] | None = None,
               elem_class: str = "studio-table") -> str:
    """An HTML table of plain-text cells (escaped here), in a box that scrolls sideways on a
    narrow screen instead of the page. `extra`: column -> per-row HTML appended to that cell
    (a badge)."""
    extra = extra or {}
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(f"<td>{esc(c)}{extra[k][i] if k in extra else ''}</td>"
                        for k, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return (f"<div class='table-scroll'><table class='{elem_class}'><thead><tr>{head}</tr>"
            f"</thead><tbody>{''.join(body)}</tbody></table></div>")


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
