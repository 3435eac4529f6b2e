"""A rater driving the Rate tab over Gradio's HTTP API, as the browser does: sign in, load a task,
fetch both clips from their opaque addresses, let them play (wall time), report each as played
from start to end (the server-side play gate), vote; the vote's reply carries the next task.
Used by the API tests, the server-kill test and by `bench/raters.py`.

Signing in is two requests, as in the page: `POST /studio/signin` (the name and password; the
reply sets the HttpOnly sign-in cookie, kept in the client's cookie jar) and the `login` event,
which binds this session hash to that sign-in (app/auth.py).

Plain HTTP, not gradio_client: when the server dies during a call, gradio_client's stream reader
returns quietly and the calling thread polls for its reply forever (and its executor threads then
block interpreter exit). A fault test needs every call to end - answered, refused or failed - within
a timeout. So each event is two requests on one keep-alive connection:
`POST /gradio_api/call/<api_name>` with our session hash (it keys the server-side `gr.State`, i.e.
the login and the loaded task) and `GET /gradio_api/call/<api_name>/<event_id>` (the reply as
server-sent events).
"""

from __future__ import annotations

import io
import json
import time
import uuid
from dataclasses import dataclass

import httpx
import soundfile as sf

NO_TASK = ("No tasks left", "today's limit")


class ApiError(Exception):
    """The app answered with a refusal (a `gr.Error`): nothing was done."""


class CallFailed(Exception):
    """No answer (connection refused or dropped, timeout): the outcome is unknown."""


class GradioSession:
    """One browser session: a session hash and a keep-alive HTTP connection."""

    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url + "/gradio_api", timeout=timeout)
        self.session_hash = uuid.uuid4().hex

    def sign_in(self, name: str, password: str) -> list:
        """The sign-in request (its cookie lands in this client's jar), then the `login`
        event that binds this session to it; ApiError when refused."""
        try:
            r = self.http.post(self.url + "/studio/signin",
                               json={"name": name, "password": password})
        except httpx.HTTPError as e:
            raise CallFailed(f"signin: {type(e).__name__}: {e}") from e
        if r.status_code != 200:
            raise ApiError(f"signin: {r.json().get('error', r.status_code)}")
        return self.call("login", "")

    def call(self, api_name: str, *data) -> list:
        """The event's outputs; ApiError if the app refused, CallFailed if there was no answer."""
        try:
            r = self.http.post(f"/call/{api_name}",
                               json={"data": list(data), "session_hash": self.session_hash})
            r.raise_for_status()
            event_id = r.json()["event_id"]
            with self.http.stream("GET", f"/call/{api_name}/{event_id}") as resp:
                resp.raise_for_status()
                return _read_reply(resp.iter_lines())
        except ApiError as e:
            raise ApiError(f"{api_name}: {e}") from None
        except httpx.HTTPError as e:
            raise CallFailed(f"{api_name}: {type(e).__name__}: {e}") from e

    def close(self) -> None:
        self.http.close()


def _read_reply(lines) -> list:
    """The `complete` event's data from a server-sent-events stream; ApiError on `error`."""
    event = None
    for line in lines:
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:") and event in ("complete", "error"):
            payload = json.loads(line[5:])
            if event == "complete":
                return payload
            if isinstance(payload, dict):
                payload = payload.get("error") or payload
            raise ApiError(str(payload))
    raise CallFailed("the reply stream ended without a result")


@dataclass
class Vote:
    saved: bool
    """The reply says the vote was stored now ("Saved: ..."): an acknowledged vote."""
    replay: bool
    """The reply says it had been stored earlier (nothing new stored)."""
    message: str
    has_next: bool
    """The reply loaded another task into the session."""
    seconds: float
    """Round trip of the vote call (POST + reply), wall clock."""


def has_task(outputs: list) -> bool:
    return not any(isinstance(o, str) and any(m in o for m in NO_TASK) for o in outputs)


TASK_CLIPS = {"prompt": 5, "A": 6, "B": 7}
"""Where a task's clips are in the outputs of `rate_skip` and `rate_vote` (app/rate.py:
the result line, then the task view: assignment, hint, panel, progress, prompt, A, B...)."""


def clip_urls(outputs: list) -> dict[str, str]:
    """side -> the clip's address in a task view (only the clips it has)."""
    out = {}
    for side, i in TASK_CLIPS.items():
        value = outputs[i] if len(outputs) > i else None
        if isinstance(value, dict) and value.get("url"):
            out[side] = value["url"]
    return out


class Rater:
    """A signed-in rater. One thread per rater: calls of one session are sequential."""

    def __init__(self, url: str, name: str, password: str, timeout: float = 30.0):
        self.name = name
        self.password = password
        self.session = GradioSession(url, timeout)
        self.clips: dict[str, str] = {}
        """The loaded task's clip addresses (from the last task view)."""

    def login(self) -> None:
        self.session.sign_in(self.name, self.password)

    def load_task(self) -> bool:
        """Load the next (or still open) task into the session, as the browser does after sign-in.
        Through the API that is `rate_skip` with no task loaded yet: it skips nothing."""
        out = self.session.call("rate_skip")
        self.clips = clip_urls(out)
        return has_task(out)

    def play_both(self, listen_s: float = 0.0) -> None:
        """As a player does: fetch clips A and B (with the sign-in cookie), then for each let
        it play - its duration, or `listen_s` if longer - and report it played from start to
        end (`rate_end_a`: the played ranges as JSON)."""
        durations = {}
        for side in ("A", "B"):
            try:
                r = self.session.http.get(self.clips[side])
                r.raise_for_status()
            except httpx.HTTPError as e:
                raise CallFailed(f"clip {side}: {type(e).__name__}: {e}") from e
            durations[side] = sf.info(io.BytesIO(r.content)).duration
        for side, seconds in durations.items():
            time.sleep(max(listen_s, seconds))
            self.session.call(f"rate_end_{side.lower()}", json.dumps([[0.0, seconds]]))

    def vote(self, choice: str = "A") -> Vote:
        t0 = time.perf_counter()
        out = self.session.call("rate_vote", choice, None, None, None, None)
        seconds = time.perf_counter() - t0
        self.clips = clip_urls(out)
        msg = out[0] if out and isinstance(out[0], str) else ""
        replay = "already recorded" in msg
        return Vote(msg.startswith("Saved") and not replay, replay, msg, has_task(out[1:]),
                    seconds)

    def close(self) -> None:
        self.session.close()
