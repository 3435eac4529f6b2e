"""A rater driving the Rate tab over Gradio's HTTP API, as the browser does: sign in, load a task,
report both clips played to the end (the server-side play gate), vote; the vote's reply carries
the next task. Used by the server-kill test and by `bench/raters.py`.

Plain HTTP, not gradio_client: when the server dies during a call, gradio_client's stream reader
returns quietly and the calling thread polls for its reply forever (and its executor threads then
block interpreter exit). A fault test needs every call to end - answered, refused or failed - within
a timeout. So each event is two requests on one keep-alive connection:
`POST /gradio_api/call/<api_name>` with our session hash (it keys the server-side `gr.State`, i.e.
the login and the loaded task) and `GET /gradio_api/call/<api_name>/<event_id>` (the reply as
server-sent events).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import httpx

NO_TASK = ("No tasks left", "today's limit")


class ApiError(Exception):
    """The app answered with a refusal (a `gr.Error`): nothing was done."""


class CallFailed(Exception):
    """No answer (connection refused or dropped, timeout): the outcome is unknown."""


class GradioSession:
    """One browser session: a session hash and a keep-alive HTTP connection."""

    def __init__(self, url: str, timeout: float = 30.0):
        self.http = httpx.Client(base_url=url.rstrip("/") + "/gradio_api", timeout=timeout)
        self.session_hash = uuid.uuid4().hex

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


class Rater:
    """A signed-in rater. One thread per rater: calls of one session are sequential."""

    def __init__(self, url: str, name: str, password: str, timeout: float = 30.0):
        self.name = name
        self.password = password
        self.session = GradioSession(url, timeout)

    def login(self) -> None:
        self.session.call("login", self.name, self.password)

    def load_task(self) -> bool:
        """Load the next (or still open) task into the session, as the browser does after sign-in.
        Through the API that is `rate_skip` with no task loaded yet: it skips nothing."""
        return has_task(self.session.call("rate_skip"))

    def play_both(self, listen_s: float = 0.0) -> None:
        """Report each clip started and, `listen_s` later, ended (the audio player's events)."""
        for side in ("a", "b"):
            self.session.call(f"rate_play_{side}")
            if listen_s > 0:
                time.sleep(listen_s)
            self.session.call(f"rate_end_{side}")

    def vote(self, choice: str = "A") -> Vote:
        t0 = time.perf_counter()
        out = self.session.call("rate_vote", choice, None, None, None, None)
        seconds = time.perf_counter() - t0
        msg = out[0] if out and isinstance(out[0], str) else ""
        replay = "already recorded" in msg
        return Vote(msg.startswith("Saved") and not replay, replay, msg, has_task(out[1:]),
                    seconds)

    def close(self) -> None:
        self.session.close()
