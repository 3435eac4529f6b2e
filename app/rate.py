"""Rate: blind, randomized A/B comparisons (with optional 1-5 MOS of each clip) for signed-in
raters. The vote buttons unlock only once the server counts both clips heard: on every pause
and end the page reports the player's `played` time ranges (`rate_end_a`/`rate_end_b` with the
ranges as JSON), and backend.rating's play gate checks them against each clip's duration and
the time since it was served. Version names are revealed after the vote. Keys: 1 A better,
2 B better, 3 tie, 4 both bad, space plays the next clip.

Rate clips (prompt, A, B) are served only under opaque per-assignment addresses,
`/studio/clip/<random token>`, answered only to the rater they were issued to (by their sign-in
cookie): never the public Listen file URLs, which name the sample and sit beside its version.

In the page, a refused vote, skip or play event (expired session, "server busy, press it again",
a task skipped in another tab...) is a message in #rate-result and leaves every other output as
it was: a raised gr.Error would mark each output of the event "Error" and blank the panel. The
API endpoints (`rate_vote`, `rate_skip`, `rate_end_a`, ...) still answer a refusal with an
error, so a script sees it."""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.route_utils import get_root_url
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse
from starlette.routing import Route

from app import auth
from app.auth import require
from app.common import PLAYER, esc
from app.rate_clip import RateClip
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
      // `ended` too: the ended event may not have run yet when a key follows the end at once
      const next = clips.find((a) => a.dataset.done !== task() && !a.ended) || clips[0];
      if (!next) return;
      ev.preventDefault();
      clips.forEach((a) => { if (a !== next) a.pause(); });
      if (next.paused) next.play(); else next.pause();
    }
  });
  // what the player of a clip actually played, for the server's play gate
  window.studioHeard = (id) => {
    const a = document.querySelector(`#${id} audio`); if (!a) return "";
    const r = a.played; const out = [];
    for (let i = 0; i < r.length; i++) out.push([r.start(i), r.end(i)]);
    return JSON.stringify(out);
  };
  document.addEventListener("ended", (ev) => {
    if (ev.target && ev.target.tagName === "AUDIO") ev.target.dataset.done = task();
  }, true);
})();
</script>
"""


CLIP_PATH = "/studio/clip/"


@dataclass
class ClipLink:
    user_id: int
    assignment_id: int
    side: str
    """"prompt", "A" or "B"."""
    path: str
    served: bool = False


class ClipLinks:
    """Random tokens naming one clip of one assignment for one rater (kept in memory: a
    restart drops them with every page session)."""

    MAX = 50_000

    def __init__(self):
        self._links: dict[str, ClipLink] = {}
        self._tokens: dict[tuple[int, int, str], str] = {}
        self._lock = threading.Lock()

    def issue(self, user_id: int, assignment_id: int, side: str, path: str) -> str:
        key = (int(user_id), int(assignment_id), side)
        with self._lock:
            token = self._tokens.get(key)
            if token is None or self._links[token].path != path:
                while len(self._links) >= self.MAX:  # the oldest go first
                    old = next(iter(self._links))
                    link = self._links.pop(old)
                    self._tokens.pop((link.user_id, link.assignment_id, link.side), None)
                token = secrets.token_urlsafe(24)
                self._links[token] = ClipLink(*key, path)
                self._tokens[key] = token
            return token

    def get(self, token: str) -> ClipLink | None:
        with self._lock:
            return self._links.get(token)


CLIPS = ClipLinks()


def clip_routes(rt: Runtime) -> list[Route]:
    """`GET /studio/clip/<token>`: the clip's bytes for the rater it was issued to, else 404
    (the same answer for an unknown token and another user's, so neither can be probed). The
    first fetch of clip A or B starts its play-gate clock (`rating.record_served`)."""

    async def clip(request: Request):
        link = CLIPS.get(request.path_params["token"])
        sign_in = auth.SIGN_INS.live(auth.cookie_digest(request))
        if link is None or sign_in is None or sign_in.user_id != link.user_id:
            return PlainTextResponse("No such clip.", 404)
        if link.side in SIDES and not link.served:
            try:
                await run_in_threadpool(rating.record_served, rt, link.user_id,
                                        link.assignment_id, link.side)
            except rating.RatingError:
                return PlainTextResponse("No such clip.", 404)
            link.served = True
        suffix = Path(link.path).suffix.lower()
        return FileResponse(link.path, filename=f"{link.side.lower()}{suffix}",
                            content_disposition_type="inline",
                            headers={"Cache-Control": "private, no-store"})

    return [Route(CLIP_PATH + "{token}", clip, methods=["GET", "HEAD"])]


def _page_root(rt: Runtime, request: gr.Request) -> str:
    """The app's public base URL as the browser reaches it (proxy headers and
    `server.root_path` considered, as Gradio does for its own file URLs)."""
    req = request.request
    return get_root_url(req, req.url.path, rt.settings.server.root_path or None)


def _clip_column(side: str):
    """One clip with its two optional ACR scales; A and B are built alike so the page and the
    keyboard script see the same ids (clip-a, mos-a-meaning, ...) on both sides."""
    low = side.lower()
    with gr.Column(min_width=260) as col:
        clip = RateClip(label=f"Clip {side}", interactive=False, type="filepath",
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
        prompt_audio = RateClip(label="Prompt", interactive=False, type="filepath",
                                waveform_options=PLAYER, buttons=["download"],
                                elem_id="rate-prompt")
        with gr.Row(equal_height=False):
            _, clip_a, a_mean, a_nat = _clip_column("A")
            col_b, clip_b, b_mean, b_nat = _clip_column("B")
        gate = gr.Markdown("Listen to both clips to the end to unlock the vote.",
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
        heard = gr.Textbox(visible=False)  # the played ranges a pause or end reports
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

    def _clip_urls(user, t: dict, request: gr.Request) -> dict[str, str | None]:
        """side ("prompt", "A", "B") -> the clip's opaque address for this rater."""
        root = _page_root(rt, request)
        files = {"prompt": t["prompt_audio"], **t["audio"]}
        return {side: (f"{root}{CLIP_PATH}{CLIPS.issue(user.id, t['assignment_id'], side, p)}"
                       if (p := media.safe_audio(rt, path)) else None)
                for side, path in files.items()}

    def _task_view(user, request: gr.Request) -> list:
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
        urls = _clip_urls(user, t, request)
        return [
            t["assignment_id"], gr.Markdown(visible=False), gr.Column(visible=True),
            _progress_md(user.id), urls["prompt"], urls["A"], urls.get("B") if ab else None,
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

    def load_task(sess, request: gr.Request):
        user = require(rt, sess, "rater")
        return _task_view(user, request)

    def hidden_view():
        return [None, gr.Markdown(visible=True), gr.Column(visible=False), "", None, None, None,
                gr.Column(visible=True), "", *[gr.Button() for _ in buttons],
                *[gr.Radio() for _ in radios], ""]

    def heard_event(side: str):
        def fn(sess, aid, ranges):
            user = require(rt, sess, "rater")
            if aid is None:
                raise gr.Error("No task loaded.")
            try:
                st = rating.record_heard(rt, user.id, aid, side, ranges)
            except rating.RatingError as e:
                raise gr.Error(str(e)) from None
            # buttons are re-sent only when the vote unlocks: rebuilding the five button
            # configs was most of a play event's server CPU (bench/raters.py)
            ab = "B" in st["heard"]
            if not st["unlocked"]:
                return [_gate_md(st, ab), *[gr.skip()] * len(buttons)]
            return [_gate_md(st, ab), *_buttons("ab" if ab else "mos", True)]

        fn.__name__ = f"heard_{side}"
        return fn

    def page_heard(side: str):
        """A pause or end of the page's player: a refusal is told in #rate-result, nothing
        else changes."""
        record = heard_event(side)

        def fn(sess, aid, ranges):
            try:
                return [gr.skip(), *record(sess, aid, ranges)]
            except Exception as e:  # noqa: BLE001 - the panel must survive (see _refusal)
                return [_refusal("Not recorded", e),
                        *[gr.skip() for _ in range(1 + len(buttons))]]

        fn.__name__ = f"page_heard_{side}"
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

    def do_vote(sess, aid, choice, am, an, bm, bn, request: gr.Request):
        user, msg = _store_vote(sess, aid, choice, am, an, bm, bn)
        return [msg, *_task_view(user, request)]

    def do_skip(sess, aid, request: gr.Request):
        user, msg = _skip(sess, aid)
        return [msg, *_task_view(user, request)]

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

        def fn(request: gr.Request, *args):
            try:
                user, msg = action(*args)
            except Exception as e:  # noqa: BLE001 - the panel must survive (see _refusal)
                return _kept(_refusal(refused, e))
            try:
                return [msg, *_task_view(user, request)]
            except Exception as e:  # noqa: BLE001 - the vote is stored; the next task is not
                if isinstance(e, rating.RatingError):
                    e = gr.Error(str(e))
                return _kept(f"{msg} {_refusal('The next task could not be loaded', e)} "
                             "Press Skip to try again.")

        fn.__name__ = f"{action.__name__.strip('_')}_in_page"
        return fn

    page_vote, page_skip = in_page(_store_vote, "Not saved"), in_page(_skip, "Not skipped")

    for side, clip in (("A", clip_a), ("B", clip_b)):
        report = f"(s, a, h) => [s, a, window.studioHeard('clip-{side.lower()}')]"
        for trigger in (clip.pause, clip.stop):
            trigger(page_heard(side), [session, assignment, heard], [result, gate, *buttons],
                    js=report, api_visibility="private", trigger_mode="multiple")
    def vote_as(choice: str | None):
        def fn(request: gr.Request, sess, aid, am, an, bm, bn):
            return page_vote(request, sess, aid, choice, am, an, bm, bn)

        fn.__name__ = f"vote_{choice or 'mos'}_in_page"
        return fn

    for choice, btn in vote_btns.items():
        btn.click(vote_as(choice), [session, assignment, *radios], [result, *task_outputs],
                  api_visibility="private", trigger_mode="once")
    submit_mos.click(vote_as(None), [session, assignment, *radios], [result, *task_outputs],
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
        gr.Button(visible=False).click(
            heard_event(side), [session, assignment, heard], [gate, *buttons],
            api_name=f"rate_end_{side.lower()}", trigger_mode="multiple")
    return load_task, hidden_view, task_outputs


def _gate_md(status: dict, ab: bool) -> str:
    if status.get("unlocked"):
        return "Both clips heard: vote now." if ab else "Clip heard: rate it now."
    parts = [f"clip {k} {'heard' if status.get(k) else f'{100 * f:.0f} % heard'}"
             for k, f in sorted(status.get("heard", {}).items())]
    return "Listen to each clip to the end to unlock the vote: " + ", ".join(parts) + "."
