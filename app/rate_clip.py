"""The Rate tab's audio player: a gr.Audio whose value is a rate clip's opaque address."""

from __future__ import annotations

import gradio as gr
from gradio.data_classes import FileData


class RateClip(gr.Audio):
    """The browser's audio player on a rate clip's opaque address (`/studio/clip/<token>`),
    which the browser fetches with the rater's cookie. A plain gr.Audio would download a URL
    value into Gradio's public file cache - exactly where these clips must never be - so this
    one hands the URL to the page as it is.

    A subclass, not an override on one instance: any update of the component (gr.skip()
    included) makes Gradio rebuild it for the session as `type(block)(**constructor_args)`,
    which dropped an instance's override, and the next clip was then downloaded (refused by
    Gradio's SSRF guard: "Hostname 127.0.0.1 failed validation"). Gradio writes a .pyi stub
    beside this module on import (ignored by git)."""

    is_template = True  # Gradio's mark for a preset of its base: the page draws a gr.Audio

    def postprocess(self, value):
        return None if value is None else FileData(path=str(value), url=str(value),
                                                   orig_name="clip.wav")
