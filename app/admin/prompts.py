"""Admin > Prompts: upload one prompt clip. Every failure is said in the result line; an upload
that fails stores nothing."""

from __future__ import annotations

import gradio as gr

from app.common import esc
from backend import prompts
from backend.runtime import Runtime
from backend.users import UserInfo


def upload_prompt(rt: Runtime, user: UserInfo, file, split: str | None,
                  text: str | None) -> str:
    """Store an uploaded clip (a path, or Gradio's file object) as a prompt; the result line."""
    if not file:
        return "**Choose a file first.**"
    path = file if isinstance(file, str) else getattr(file, "name", None)
    try:
        data = prompts.read_upload(rt, path)
        p = prompts.upload_prompt(rt, data, user_id=user.id,
                                  split=split or rt.settings.generation.train_split,
                                  reference_text=text or None)
    except prompts.PromptError as e:
        return f"**Upload refused:** {esc(e)}"
    except OSError as e:  # disk full, read-only data directory: the service stored nothing
        return (f"**Upload failed, nothing stored:** cannot write the audio "
                f"({esc(e.strerror or e)}); check the data directory's free space and "
                "permissions.")
    if p["duplicate"]:
        return f"This audio is already stored as prompt #{p['id']}."
    return (f"Stored prompt **#{p['id']}**: {p['duration_s']:.2f} s, {p['n_units']} units, "
            f"split {esc(p['split'])}.")


def split_choices(rt: Runtime) -> list[tuple[str, str]]:
    """The splits an upload may join, each saying what reads it (a split nothing reads would
    store a prompt no round, evaluation or Listen view ever uses)."""
    gen = rt.settings.generation
    return [(f"{gen.train_split}: rounds sample and learn from it", gen.train_split),
            (f"{gen.heldout_split}: held-out evaluation", gen.heldout_split),
            ("test: Listen and rating only", "test")]


def build_prompts(rt: Runtime, admin, session: gr.State) -> None:
    with gr.Tab("Prompts"):
        up_file = gr.File(label="Prompt audio (WAV, FLAC or MP3)", file_count="single",
                          file_types=[".wav", ".flac", ".mp3"], elem_id="admin-upload-file")
        with gr.Row():
            gen = rt.settings.generation
            up_split = gr.Dropdown(split_choices(rt), value=gen.train_split, label="Split",
                                   elem_id="admin-upload-split")
            up_text = gr.Textbox(label="Reference text (optional)")
        up_btn = gr.Button("Upload prompt", variant="primary", elem_id="admin-upload-btn")
        up_result = gr.Markdown(elem_id="admin-upload-result")

    @admin
    def do_upload(sess, file, split, text, *, user=None):
        return upload_prompt(rt, user, file, split, text)

    # undocumented, not private: scripts may call it (role-checked all the same)
    up_btn.click(do_upload, [session, up_file, up_split, up_text], [up_result],
                 api_name="admin_upload_prompt", api_visibility="undocumented")
