"""Admin > Exports: judgments or preference pairs as CSV, JSONL or a zipped HF dataset (what
TRL's DPOTrainer reads), offered as a download."""

from __future__ import annotations

import gradio as gr

from app.admin.base import PRIVATE
from app.common import esc
from backend import exports
from backend.files import private_copy
from backend.runtime import Runtime
from backend.users import UserInfo


def export(rt: Runtime, user: UserInfo, what: str, fmt: str, flagged) -> tuple[str, str]:
    """Write the export file: (its path, for the download box; the result line)."""
    try:
        path = exports.export_file(rt, what, fmt, bool(flagged))
    except Exception as e:  # noqa: BLE001 - e.g. no pairs yet: say so
        raise gr.Error(f"Export failed: {e}") from None
    # the exports folder is never served: the download is a private copy that Gradio moves
    # into its cache under a content-hash name, handed only to this admin's page
    return str(private_copy(path)), f"Exported {esc(what)} ({esc(fmt)}) to `{esc(path)}`."


def build_exports(rt: Runtime, admin, session: gr.State) -> None:
    with gr.Tab("Exports"):
        with gr.Row():
            exp_what = gr.Radio([("Judgments", "judgments"), ("Preference pairs", "pairs")],
                                value="judgments", label="Export", elem_id="export-what")
            exp_fmt = gr.Radio([("CSV", "csv"), ("JSONL", "jsonl"),
                                ("HF datasets, zipped (for TRL)", "hf")], value="csv",
                               label="Format", elem_id="export-format")
            exp_flagged = gr.Checkbox(False, label="Include flagged votes (judgments)")
        exp_btn = gr.Button("Export", size="sm", elem_id="export-btn")
        exp_file = gr.File(label="Download", interactive=False, elem_id="export-file")
        exp_md = gr.Markdown(elem_id="export-result")

    @admin
    def do_export(sess, what, fmt, flagged, *, user=None):
        return export(rt, user, what, fmt, flagged)

    exp_btn.click(do_export, [session, exp_what, exp_fmt, exp_flagged], [exp_file, exp_md],
                  **PRIVATE)
