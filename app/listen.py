"""Listen: anyone picks a prompt (search, random, or their own clip) and hears the baseline and
each aligned version continue it, side by side, with transcripts, AI scores and human ratings."""

from __future__ import annotations

import gradio as gr

from app.common import PLAYER, esc
from backend import media, prompts
from backend.runtime import Runtime

MAX_SLOTS = 6


def _choice_label(p: dict) -> str:
    text = p.get("transcript") or p.get("reference_text") or ""
    text = text if len(text) <= 70 else text[:67] + "..."
    return f"#{p['id']} ({p['duration_s']:.1f} s) {text}".strip()


def _ratings_md(x: dict) -> str:
    r = x.get("ratings") or {}
    lines = [f"**Transcript:** {esc(x.get('transcript') or '(not transcribed yet)')}"]
    ai = r.get("ai")
    lines.append(f"**AI score:** {ai:.2f} / 5 (n={r.get('ai_n', 0)})" if ai is not None
                 else "**AI score:** not judged yet")
    mos = r.get("mos") or {}
    if mos:
        lines.append("**Human MOS:** " + ", ".join(
            f"{esc(a)} {m:.2f} (n={n})" for a, (m, n) in sorted(mos.items())))
    ab = r.get("ab") or {}
    if any(ab.values()):
        lines.append(f"**A/B:** {ab.get('win', 0)} won, {ab.get('loss', 0)} lost, "
                     f"{ab.get('tie', 0)} tie/both bad")
    if not mos and not any(ab.values()):
        lines.append("**Human ratings:** none yet")
    return "  \n".join(lines)


def build_listen(rt: Runtime) -> None:
    gr.Markdown("Pick a prompt and compare how each model version continues it. "
                "Anyone can listen; no sign-in needed.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=260):
            query = gr.Textbox(label="Search prompts (words or #id)", elem_id="listen-search",
                               placeholder="e.g. the dog, or #12")
            pick = gr.Dropdown(label="Prompt", choices=[], elem_id="listen-pick",
                               allow_custom_value=False)
            with gr.Row():
                search_btn = gr.Button("Search", size="sm")
                rand_btn = gr.Button("Random prompt", size="sm", elem_id="listen-random")
        with gr.Column(scale=2, min_width=260):
            own = gr.Audio(label="Or upload your own clip (WAV, FLAC or MP3)", type="filepath",
                           sources=["upload", "microphone"], elem_id="listen-own",
                           waveform_options=PLAYER, buttons=["download"])
            own_btn = gr.Button("Continue my clip", size="sm", elem_id="listen-continue")
    status = gr.Markdown(elem_id="listen-status")
    with gr.Row(equal_height=False):
        with gr.Column(min_width=260):
            p_title = gr.Markdown("### Prompt")
            p_audio = gr.Audio(label="Prompt", interactive=False, type="filepath",
                               waveform_options=PLAYER, buttons=["download"],
                               elem_id="listen-prompt")
            p_img = gr.Image(label="Prompt waveform and spectrogram", interactive=False,
                             show_label=False, height=150, type="filepath", buttons=[])
            p_text = gr.Markdown()
    slots = []
    with gr.Row(equal_height=False, elem_classes=["slot-row"]):
        for i in range(MAX_SLOTS):
            with gr.Column(visible=False, min_width=260, elem_classes=["slot"]) as col:
                head = gr.Markdown()
                audio = gr.Audio(label=f"Continuation {i + 1}", interactive=False,
                                 type="filepath", waveform_options=PLAYER, buttons=["download"],
                                 elem_id=f"listen-slot-{i}")
                img = gr.Image(show_label=False, label=f"Continuation {i + 1} picture",
                               interactive=False, height=150, type="filepath",
                               buttons=[])
                info = gr.Markdown()
            slots.append((col, head, audio, img, info))
    outputs = [status, p_title, p_audio, p_img, p_text]
    for col, head, audio, img, info in slots:
        outputs += [col, head, audio, img, info]

    def empty(msg: str):
        out = [msg, "### Prompt", None, None, ""]
        for _ in slots:
            out += [gr.Column(visible=False), "", None, None, ""]
        return out

    def show_prompt(pid):
        if pid in (None, ""):
            return empty("Choose a prompt.")
        try:
            view = prompts.prompt_view(rt, int(pid))
        except (TypeError, ValueError):
            view = None
        if view is None:
            return empty("That prompt does not exist.")
        p = view["prompt"]
        path = media.safe_audio(rt, p["audio_path"])
        out = ["" if view["versions"] else
               "No continuations for this prompt yet (an admin can start a generate job).",
               f"### Prompt #{p['id']}", path, media.plot_png(rt, path),
               f"**Text:** {esc(p.get('transcript') or p.get('reference_text') or '(unknown)')}"
               f"  \n{p['duration_s']:.1f} s, {p['n_units']} units, split {esc(p['split'])}"]
        cards = [(v, x) for v in view["versions"] for x in v["samples"][:1]]
        for i, _slot in enumerate(slots):
            if i < len(cards):
                v, x = cards[i]
                kind = "baseline" if v["kind"] == "baseline" else f"aligned, round {v['round']}"
                spath = media.safe_audio(rt, x["audio_path"])
                out += [gr.Column(visible=True), f"### {esc(v['name'])}\n_{kind}_", spath,
                        media.plot_png(rt, spath), _ratings_md(x)]
            else:
                out += [gr.Column(visible=False), "", None, None, ""]
        return out

    def search(q):
        rows = prompts.search_prompts(rt, q or "", limit=100)
        choices = [(_choice_label(p), p["id"]) for p in rows]
        msg = f"{len(rows)} prompt(s) found." if rows else (
            "No prompts yet: the world is not built or no prompts were imported."
            if not q else "No prompt matches.")
        return gr.Dropdown(choices=choices, value=None), msg

    def random_pick():
        pid = prompts.random_prompt_id(rt)
        if pid is None:
            return (gr.Dropdown(), *empty("No prompts yet: the world is not built or no "
                                          "prompts were imported."))
        rows = prompts.search_prompts(rt, f"#{pid}", limit=1)
        choices = [(_choice_label(p), p["id"]) for p in rows]
        return (gr.Dropdown(choices=choices, value=pid), *show_prompt(pid))

    def continue_own(path):
        if not path:
            return empty("Upload or record a clip first.")
        try:
            data = prompts.read_upload(rt, path)
            res = prompts.continue_clip(rt, data)
        except prompts.PromptError as e:
            return empty(f"**Cannot continue this clip:** {esc(e)}")
        out = [f"Your clip: {res['duration_s']:.1f} s, {res['n_units']} units. Not stored.",
               "### Your clip", media.safe_audio(rt, res["prompt_path"]),
               media.plot_png(rt, res["prompt_path"]),
               f"**Heard as:** {esc(res['prompt_text'] or '(no transcript)')}"]
        conts = res["continuations"]
        for i, _slot in enumerate(slots):
            if i < len(conts):
                c = conts[i]
                spath = media.safe_audio(rt, c["audio_path"])
                score = (f"**AI score:** {c['ai_score']:.2f} / 5" if c["ai_score"] is not None
                         else "**AI score:** n/a")
                info = (f"**Failed:** {esc(c['error'])}" if c["error"] else
                        f"**Transcript:** {esc(c['transcript'])}  \n{score}")
                out += [gr.Column(visible=True), f"### {esc(c['version'])}", spath,
                        media.plot_png(rt, spath), info]
            else:
                out += [gr.Column(visible=False), "", None, None, ""]
        return out

    search_btn.click(search, [query], [pick, status], api_name="listen_search")
    query.submit(search, [query], [pick, status], api_visibility="private")
    pick.input(show_prompt, [pick], outputs, api_name="listen_prompt")
    rand_btn.click(random_pick, None, [pick, *outputs], api_visibility="private")
    own_btn.click(continue_own, [own], outputs, api_visibility="private",
                  concurrency_limit=1, concurrency_id="live-continuation")
    return search, query, pick, status
