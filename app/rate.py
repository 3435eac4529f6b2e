"""Rate: blind, randomized A/B comparisons (with optional 1-5 MOS of each clip) for signed-in
raters. The vote buttons unlock only when the server has seen both clips played to the end;
version names are revealed after the vote. Keys: 1 A better, 2 B better, 3 tie, 4 both bad,
space plays the next clip.

In the page, a refused vote, skip or play event (expired session, "server busy, press it again",
a task skipped in another tab...) is a message in #rate-result and leaves every other output as
it was: a raised gr.Error would mark each output of the event "Error" and blank the panel. The
API endpoints (`rate_vote`, `rate_skip`, `rate_play_a`, ...) still answer a refusal with an
error, so a script sees it."""

from __future__ import annotations

import logging
import secrets

import gradio as gr

from app.auth import require
from app.common import PLAYER, esc
from backend import media, rating
from backend.runtime import Runtime

ACR = [(f"{v} {label}", v) for v, label in sorted(rating.ACR_LABELS.items(), reverse=True)]
SIDES = rating.SIDES
CHOICES = {"A": "A better", "B": "B better", "tie": "Tie", "both_bad": "Both bad"}
log = logging.getLogger(__name__)

KEYS_JS = """
<script>
(() => {
  if (window.__studioKeys) return; window.__studioKeys = true;
  const ids = {"1": "vote-a", "2": "vote-b", "3": "vote-tie", "4": "vote-bad"};
  // a clip is marked played for the task on screen (a tag new with every task shown): the
  // audio elements are reused between tasks, even with the same file, so a plain marker or
  // `ended` would carry over and Space would replay A instead of playing B
  const task = () => { const t = document.querySelector("#rate-task [data-task]");
    return t ? t.dataset.task : ""; };
  document.addEventListener("keydown", (ev) => {
    const t = ev.target; const tag = (t && t.tagName || "").toLowerCase();
    if (["input", "textarea", "select"].includes(tag) || (t && t.isContentEditable)) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const panel = document.getElementById("rate-panel");
    if (!panel || panel.offsetParent === null) return;
    if (ids[ev.key]) {
      const b = document.getElementById(ids[ev.key]);
      if (b && !b.disabled && b.offsetParent !== null) { ev.preventDefault(); b.click(); }
    } else if (ev.key === " " || ev.code === "Space") {
      if (tag === "button") return;
      const clips = ["clip-a", "clip-b"].map((id) => document.querySelector(`#${id} audio`))
        .filter((a) => a && a.offsetParent !== null);
      const next = clips.find((a) => a.dataset.done !== task()) || clips[0];
      if (!next) return;
      ev.preventDefault();
      clips.forEach((a) => { if (a !== next) a.pause(); });
      if (next.paused) next.play(); else next.pause();
    }
  });
  document.addEventListener("ended", (ev) => {
    if (ev.target && ev.target.tagName === "AUDIO") ev.target.dataset.done = task();
  }, true);
})();
</script>
"""


def _clip_column(side: str):
    """One clip with its two optional ACR scales; A and B are built alike so the page and the
    keyboard script see the same ids (clip-a, mos-a-meaning, ...) on both sides."""
    low = side.lower()
    with gr.Column(min_width=260) as col:
        clip = gr.Audio(label=f"Clip {side}", interactive=False, type="filepath",
                        waveform_options=PLAYER, buttons=["download"], elem_id=f"clip-{low}")
        meaning = gr.Radio(ACR, label=f"Clip {side} meaningfulness (optional)",
                           elem_id=f"mos-{low}-meaning")
        natural = gr.Radio(ACR, label=f"Clip {side} naturalness (optional)",
                           elem_id=f"mos-{low}-natural")
    return col, clip, meaning, natural


def build_rate(rt: Runtime, session: gr.State):
    """Build the tab; returns (load_fn, outputs) so sign-in can load the first task."""
    assignment = gr.State(None)
    signin_hint = gr.Markdown("**Sign in as a rater to rate.** Use the sign-in box above.",
                              elem_id="rate-signin-hint")
    with gr.Column(visible=False, elem_id="rate-panel") as panel:
        prog = gr.Markdown(elem_id="rate-progress")
        gr.Markdown(
            "Listen to the prompt, then to both continuations **to the end**. Which continues "
            "the prompt better (meaningful, on topic, natural)? Keys: **1** A better, "
            "**2** B better, **3** tie, **4** both bad, **space** plays the next clip.")
        prompt_audio = gr.Audio(label="Prompt", interactive=False, type="filepath",
                                waveform_options=PLAYER, buttons=["download"],
                                elem_id="rate-prompt")
        with gr.Row(equal_height=False):
            _, clip_a, a_mean, a_nat = _clip_column("A")
            col_b, clip_b, b_mean, b_nat = _clip_column("B")
        gate = gr.Markdown("Play both clips to the end to unlock the vote.",
                           elem_id="rate-gate")
        with gr.Row():
            vote_btns = {
                "A": gr.Button("A better (1)", elem_id="vote-a", interactive=False),
                "B": gr.Button("B better (2)", elem_id="vote-b", interactive=False),
                "tie": gr.Button("Tie (3)", elem_id="vote-tie", interactive=False),
                "both_bad": gr.Button("Both bad (4)", elem_id="vote-bad", interactive=False),
            }
            submit_mos = gr.Button("Submit rating", elem_id="vote-mos", interactive=False,
                                   visible=False)
            skip_btn = gr.Button("Skip", elem_id="rate-skip", variant="secondary")
        result = gr.Markdown(elem_id="rate-result")
        task_tag = gr.HTML("", elem_id="rate-task")
    radios = [a_mean, a_nat, b_mean, b_nat]
    buttons = [*vote_btns.values(), submit_mos]
    task_outputs = [assignment, signin_hint, panel, prog, prompt_audio, clip_a, clip_b, col_b,
                    gate, *buttons, *radios, task_tag]

    def _progress_md(user_id: int) -> str:
        p = rating.progress(rt, user_id)
        return f"**{p['done_today']} of {p['cap']} today**"

    def _buttons(kind: str, unlocked: bool):
        ab = kind == "ab"
        return [gr.Button(interactive=unlocked, visible=ab) for _ in vote_btns] + [
            gr.Button(interactive=unlocked, visible=not ab)]

    def _task_view(user) -> list:
        t = rating.next_task(rt, user.id)
        if t is None:
            p = rating.progress(rt, user.id)
            why = ("You reached today's limit. Thank you!" if p["done_today"] >= p["cap"]
                   else "No tasks left for you right now. Thank you!")
            return [None, gr.Markdown(visible=False), gr.Column(visible=True), _progress_md(
                user.id) + f"  \n{why}", None, None, None, gr.Column(visible=False),
                "", *[gr.Button(interactive=False, visible=False) for _ in buttons],
                *[gr.Radio(value=None, visible=False) for _ in radios], ""]
        status = rating.play_status(rt, user.id, t["assignment_id"])
        ab = t["kind"] == "ab"
        return [
            t["assignment_id"], gr.Markdown(visible=False), gr.Column(visible=True),
            _progress_md(user.id),
            media.safe_audio(rt, t["prompt_audio"]),
            media.safe_audio(rt, t["audio"].get("A")),
            media.safe_audio(rt, t["audio"].get("B")) if ab else None,
            gr.Column(visible=ab),
            _gate_md(status, ab),
            *_buttons(t["kind"], status["unlocked"]),
            gr.Radio(value=None, visible=True,
                     label="Clip A meaningfulness" + (" (optional)" if ab else " (required)")),
            gr.Radio(value=None, visible=True), gr.Radio(value=None, visible=ab),
            gr.Radio(value=None, visible=ab),
            # new with every task shown: the page's played markers belong to it (KEYS_JS)
            f'<span data-task="{secrets.token_hex(8)}"></span>',
        ]

    def load_task(sess):
        user = require(rt, sess, "rater")
        return _task_view(user)

    def hidden_view():
        return [None, gr.Markdown(visible=True), gr.Column(visible=False), "", None, None, None,
                gr.Column(visible=True), "", *[gr.Button() for _ in buttons],
                *[gr.Radio() for _ in radios], ""]

    def play_event(side: str, event: str):
        def fn(sess, aid):
            user = require(rt, sess, "rater")
            if aid is None:
                raise gr.Error("No task loaded.")
            try:
                st = rating.record_play(rt, user.id, aid, side, event)
            except rating.RatingError as e:
                raise gr.Error(str(e)) from None
            # Outputs that do not change are skipped: a start never unlocks, and rebuilding the
            # five button configs was most of a play event's server CPU (bench/raters.py).
            if event == "start":
                return [gr.skip()] * (1 + len(buttons))
            kind = "ab" if "B" in st else "mos"
            gate = _gate_md(st, kind == "ab")
            if not st["unlocked"]:
                return [gate, *[gr.skip()] * len(buttons)]
            return [gate, *_buttons(kind, True)]

        fn.__name__ = f"play_{side}_{event}"
        return fn

    def page_play(side: str, event: str):
        """A play event of the page: a refusal is told in #rate-result, nothing else changes."""
        record = play_event(side, event)

        def fn(sess, aid):
            try:
                return [gr.skip(), *record(sess, aid)]
            except Exception as e:  # noqa: BLE001 - the panel must survive (see _refusal)
                return [_refusal("Not recorded", e),
                        *[gr.skip() for _ in range(1 + len(buttons))]]

        fn.__name__ = f"page_play_{side}_{event}"
        return fn

    def _store_vote(sess, aid, choice, am, an, bm, bn):
        """(user, the result line) of a stored vote; gr.Error when refused."""
        user = require(rt, sess, "rater")
        if aid is None:
            raise gr.Error("No task loaded.")
        mos = {"A.meaningfulness": am, "A.naturalness": an, "B.meaningfulness": bm,
               "B.naturalness": bn}
        try:
            res = rating.vote(rt, user.id, int(aid), choice, mos)
        except rating.RatingError as e:
            raise gr.Error(str(e)) from None
        said = CHOICES.get(res.choice, "your rating") if res.choice else "your rating"
        reveal = ", ".join(f"{k} was **{esc(v)}**" for k, v in sorted(res.reveal.items()))
        note = " (already recorded earlier)" if res.replay else ""
        return user, f"Saved{note}: {said}. {reveal}."

    def _skip(sess, aid):
        user = require(rt, sess, "rater")
        if aid is not None:
            try:
                rating.skip(rt, user.id, int(aid))
            except rating.RatingError as e:
                raise gr.Error(str(e)) from None
        return user, "Skipped."

    def do_vote(sess, aid, choice, am, an, bm, bn):
        user, msg = _store_vote(sess, aid, choice, am, an, bm, bn)
        return [msg, *_task_view(user)]

    def do_skip(sess, aid):
        user, msg = _skip(sess, aid)
        return [msg, *_task_view(user)]

    def _refusal(what: str, e: Exception) -> str:
        """The line that says why an event did nothing; a failure (not a refusal) is logged."""
        if isinstance(e, gr.Error):
            return f"**{what}:** {esc(e.message)}"
        log.error("rate event failed", exc_info=e)
        return (f"**{what}:** the server failed ({esc(type(e).__name__)}). Press it again: a "
                "vote is never counted twice.")

    def _kept(msg: str) -> list:
        """The message in #rate-result, every other output left as it is."""
        return [msg, *[gr.skip() for _ in task_outputs]]

    def in_page(action, refused: str):
        """A browser event of the panel: the action, then the next task; a refusal (or a
        failure) is told in #rate-result and the panel stays as it was, usable."""

        def fn(*args):
            try:
                user, msg = action(*args)
            except Exception as e:  # noqa: BLE001 - the panel must survive (see _refusal)
                return _kept(_refusal(refused, e))
            try:
                return [msg, *_task_view(user)]
            except Exception as e:  # noqa: BLE001 - the vote is stored; the next task is not
                if isinstance(e, rating.RatingError):
                    e = gr.Error(str(e))
                return _kept(f"{msg} {_refusal('The next task could not be loaded', e)} "
                             "Press Skip to try again.")

        fn.__name__ = f"{action.__name__.strip('_')}_in_page"
        return fn

    page_vote, page_skip = in_page(_store_vote, "Not saved"), in_page(_skip, "Not skipped")

    for side, clip in (("A", clip_a), ("B", clip_b)):
        clip.play(page_play(side, "start"), [session, assignment], [result, gate, *buttons],
                  api_visibility="private", trigger_mode="multiple")
        clip.stop(page_play(side, "end"), [session, assignment], [result, gate, *buttons],
                  api_visibility="private", trigger_mode="multiple")
    for choice, btn in vote_btns.items():
        btn.click(lambda s, a, am, an, bm, bn, c=choice: page_vote(s, a, c, am, an, bm, bn),
                  [session, assignment, *radios], [result, *task_outputs],
                  api_visibility="private", trigger_mode="once")
    submit_mos.click(lambda s, a, am, an, bm, bn: page_vote(s, a, None, am, an, bm, bn),
                     [session, assignment, *radios], [result, *task_outputs],
                     api_visibility="private")
    skip_btn.click(page_skip, [session, assignment], [result, *task_outputs],
                   api_visibility="private")
    # documented endpoints for scripted raters / tests: same checks as the buttons, and a
    # refusal is an error the caller sees
    api_vote = gr.Textbox(visible=False)
    api_vote.submit(do_vote, [session, assignment, api_vote, *radios],
                    [result, *task_outputs], api_name="rate_vote")
    api_skip = gr.Button(visible=False)
    api_skip.click(do_skip, [session, assignment], [result, *task_outputs], api_name="rate_skip")
    for side in SIDES:
        for event, name in (("start", "play"), ("end", "end")):
            gr.Button(visible=False).click(
                play_event(side, event), [session, assignment], [gate, *buttons],
                api_name=f"rate_{name}_{side.lower()}", trigger_mode="multiple")
    return load_task, hidden_view, task_outputs


def _gate_md(status: dict, ab: bool) -> str:
    if status.get("unlocked"):
        return "Both clips played: vote now." if ab else "Clip played: rate it now."
    parts = [f"clip {k} {'played' if status.get(k) else 'not played to the end yet'}"
             for k in ("A", "B") if k in status]
    return "Play to unlock the vote: " + ", ".join(parts) + "."
