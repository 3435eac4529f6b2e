"""Listen: anyone hears the baseline and the aligned versions continue a prompt, side by side,
with transcripts (the training judge's faults marked: off-topic words, a wrong pronoun, another
name), AI scores and human ratings. It opens on a featured prompt (`prompts.featured_prompt`:
where the newest aligned version gained most) with the baseline and that version first; search,
"Random prompt" and the visitor's own clip pick others. Before any aligned version exists it
says so, with the progress of the first round (queued on the app's first start)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import gradio as gr

from app.common import PLAYER, esc
from backend import jobs, media, prompts, registry
from backend.formatting import num, pct
from backend.runtime import Runtime

MAX_SLOTS = 6


def _choice_label(p: dict) -> str:
    text = p.get("transcript") or p.get("reference_text") or ""
    text = text if len(text) <= 70 else text[:67] + "..."
    return f"#{p['id']} ({p['duration_s']:.1f} s) {text}".strip()


FAULT_LABELS = {"off_topic": "off topic", "wrong_pronoun": "wrong pronoun",
                "other_name": "another name"}


def transcript_html(text: str | None, faults: list[tuple[str, str | None]] | None) -> str:
    """The transcript, escaped, its words marked where the training judge counts a fault
    (`faults`: its words in order, as the judge split them; no marks when they do not line up
    with the transcript's words)."""
    if text is None:
        return "<i>(not transcribed yet)</i>"
    if not text.strip():  # transcribed: the ASR heard no words
        return "<i>(no words heard)</i>"
    words = list(re.finditer(r"[A-Za-z]+", text))
    if not faults or len(words) != len(faults) or \
            any(m.group(0).lower() != w for m, (w, _f) in zip(words, faults, strict=True)):
        return esc(text)
    out, pos = [], 0
    for m, (_w, fault) in zip(words, faults, strict=True):
        out.append(esc(text[pos:m.start()]))
        word = esc(m.group(0))
        out.append(f"<mark class='fault fault-{fault}' title='{FAULT_LABELS[fault]}'>{word}"
                   "</mark>" if fault in FAULT_LABELS else word)
        pos = m.end()
    out.append(esc(text[pos:]))
    return "".join(out)


def ratings_html(x: dict) -> str:
    r = x.get("ratings") or {}
    marked = any(f for _w, f in x.get("faults") or [])
    lines = [f"<b>Transcript:</b> {transcript_html(x.get('transcript'), x.get('faults'))}"]
    if marked:
        lines.append("<small>marked: what the training judge counts against it</small>")
    ai = r.get("ai")
    lines.append(f"<b>AI score:</b> {num(ai)} / 5 (n={r.get('ai_n', 0)})" if ai is not None
                 else "<b>AI score:</b> not judged yet")
    mos = r.get("mos") or {}
    if mos:
        lines.append("<b>Human MOS:</b> " + ", ".join(
            f"{esc(a)} {num(m)} (n={n})" for a, (m, n) in sorted(mos.items())))
    ab = r.get("ab") or {}
    if any(ab.values()):
        lines.append(f"<b>A/B:</b> {ab.get('win', 0)} won, {ab.get('loss', 0)} lost, "
                     f"{ab.get('tie', 0)} tie/both bad")
    if not mos and not any(ab.values()):
        lines.append("<b>Human ratings:</b> none yet")
    return "<div class='listen-info'>" + "<br>".join(lines) + "</div>"


def version_head(v: dict) -> str:
    """A card's title: the version, its kind, and the training judge's mean over all of its
    continuations of this prompt (the featured gain is the difference of these means, while
    the card plays one continuation)."""
    kind = "baseline" if v["kind"] == "baseline" else f"aligned, round {v['round']}"
    n = v.get("n_samples", len(v["samples"]))
    plural = "s" if n != 1 else ""
    mean = (f"mean AI score {num(v['ai_mean'])} over its {n} continuation{plural} of this "
            "prompt; one is played here" if v.get("ai_mean") is not None
            else f"{n} continuation{plural} of this prompt, not judged yet")
    return f"### {esc(v['name'])}\n_{kind}_ · {mean}"


def side_by_side(versions: list[dict]) -> list[dict]:
    """Baseline first, then the aligned versions newest first (the comparison that matters)."""
    base = [v for v in versions if v["kind"] == "baseline"]
    rest = [v for v in versions if v["kind"] != "baseline"]
    return base + sorted(rest, key=lambda v: (-(v["round"] or 0), v["name"]))


def round_notice(rt: Runtime) -> str:
    """With no aligned version yet: that the first round is running (and how far), queued, or
    not started."""
    if any(v.kind == "aligned" for v in registry.list_versions(rt)):
        return ""
    job = next((j for j in jobs.list_jobs(rt, 50) if j.kind == "round"
                and j.status in ("queued", "running")), None)
    if job is None:
        return ("**No aligned version yet.** An admin starts a training round (Admin › Training "
                "round); Listen then plays it beside the baseline.")
    if job.status == "queued":
        return ("**No aligned version yet: the first training round is queued** (it starts "
                "when the baseline's samples are judged). Its version appears here beside the "
                "baseline when it is done.")
    return (f"**No aligned version yet: the first training round is running**, "
            f"{pct(job.progress)} done — {esc(job.message)}. Its version appears here beside "
            "the baseline when it is done.")


def build_listen(rt: Runtime) -> SimpleNamespace:
    """The tab's components and events. Returns what `app.main` wires: `open` (the featured
    prompt, on page load), `refresh` (the shown prompt again, when a job finished) and
    `notice` (the first round's progress, polled)."""
    gr.Markdown("Hear how each model version continues a prompt: the baseline and the aligned "
                "versions side by side. Anyone can listen; no sign-in needed.")
    notice = gr.Markdown(elem_id="listen-round")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=260):
            query = gr.Textbox(label="Search prompts (words or #id)", elem_id="listen-search",
                               placeholder="e.g. the dog, or #12")
            # choices are filled per page; a custom value lets an API client (or a typed id)
            # ask for any prompt id, which show_prompt checks itself
            pick = gr.Dropdown(label="Prompt", choices=[], elem_id="listen-pick",
                               allow_custom_value=True)
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
                head = gr.Markdown(elem_id=f"listen-head-{i}")
                audio = gr.Audio(label=f"Continuation {i + 1}", interactive=False,
                                 type="filepath", waveform_options=PLAYER, buttons=["download"],
                                 elem_id=f"listen-slot-{i}")
                img = gr.Image(show_label=False, label=f"Continuation {i + 1} picture",
                               interactive=False, height=150, type="filepath",
                               buttons=[])
                info = gr.HTML(elem_id=f"listen-info-{i}")
            slots.append((col, head, audio, img, info))
    outputs = [status, p_title, p_audio, p_img, p_text]
    for col, head, audio, img, info in slots:
        outputs += [col, head, audio, img, info]

    def empty(msg: str):
        out = [msg, "### Prompt", None, None, ""]
        for _ in slots:
            out += [gr.Column(visible=False), "", None, None, ""]
        return out

    def show_prompt(pid, intro: str = ""):
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
        out = [intro if view["versions"] else
               "No continuations for this prompt yet (an admin can start a generate job).",
               f"### Prompt #{p['id']}", path, media.plot_png(rt, path),
               f"**Text:** {esc(p.get('transcript') or p.get('reference_text') or '(unknown)')}"
               f"  \n{p['duration_s']:.1f} s, {p['n_units']} units, split {esc(p['split'])}"]
        cards = [(v, x) for v in side_by_side(view["versions"]) for x in v["samples"][:1]]
        for i, _slot in enumerate(slots):
            if i < len(cards):
                v, x = cards[i]
                spath = media.safe_audio(rt, x["audio_path"])
                out += [gr.Column(visible=True), version_head(v), spath,
                        media.plot_png(rt, spath), ratings_html(x)]
            else:
                out += [gr.Column(visible=False), "", None, None, ""]
        return out

    def choices_with(pid=None, q: str = ""):
        rows = prompts.search_prompts(rt, q, limit=100)
        if pid is not None and all(r["id"] != pid for r in rows):
            rows = prompts.search_prompts(rt, f"#{pid}", limit=1) + rows
        return [(_choice_label(r), r["id"]) for r in rows]

    def open_featured():
        """The page's first view: the featured prompt, with why it is featured."""
        f = prompts.featured_prompt(rt)
        if f is None:
            return (gr.Dropdown(choices=choices_with()), round_notice(rt),
                    *empty("No continuations yet: the world is not built, or its first samples "
                           "are still being made."))
        if f["aligned"] and f["gain"] is not None:
            intro = (f"**Featured prompt #{f['prompt_id']}**: where **{esc(f['aligned'])}** "
                     f"gained most over **{esc(f['baseline'])}** by the training judge "
                     f"({'+' if f['gain'] >= 0 else ''}{num(f['gain'])} on the 1-5 scale). "
                     "“Random prompt” shows others.")
        elif f["aligned"]:
            intro = (f"**Featured prompt #{f['prompt_id']}**: {esc(f['baseline'])} and "
                     f"{esc(f['aligned'])} side by side (not judged yet).")
        else:
            intro = f"**Prompt #{f['prompt_id']}**: the baseline's continuations."
        return (gr.Dropdown(choices=choices_with(f["prompt_id"]), value=f["prompt_id"]),
                round_notice(rt), *show_prompt(f["prompt_id"], intro))

    def refresh(pid):
        """After a job finished: the shown prompt again (new continuations, scores, versions),
        or the featured one if none is shown."""
        if pid in (None, ""):
            return open_featured()
        return (gr.Dropdown(), round_notice(rt), *show_prompt(pid))

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
        return (gr.Dropdown(choices=choices_with(pid), value=pid),
                *show_prompt(pid, f"A random prompt: #{pid}."))

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
                score = (f"<b>AI score:</b> {num(c['ai_score'])} / 5"
                         if c["ai_score"] is not None else "<b>AI score:</b> n/a")
                info = (f"<b>Failed:</b> {esc(c['error'])}" if c["error"] else
                        f"<b>Transcript:</b> {esc(c['transcript'])}<br>{score}")
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
    return SimpleNamespace(open=open_featured, refresh=refresh, pick=pick,
                           outputs=[pick, notice, *outputs],
                           notice=notice, notice_text=lambda: round_notice(rt))
