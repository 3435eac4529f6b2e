"""In-app sign-in, kept in server-side session state.

The session is a `gr.State` value: Gradio keeps State on the server per browser session, so a
client can neither read nor forge it. It holds only the user id and the login time; every
handler re-reads the user from the store (`require`), so a demoted or deactivated account loses
its rights at the next click, and a session older than `server.session_hours` is refused.
Failed logins are rate-limited per client IP + user name (`server.login_attempts_per_minute`).
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque

import gradio as gr

from backend import users
from backend.runtime import Runtime

ROLE_RANK = {"rater": 1, "admin": 2}


class LoginLimiter:
    """Sliding one-minute window of failed attempts per (ip, name)."""

    def __init__(self, per_minute: int):
        self.per_minute = max(1, int(per_minute))
        self._fails: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _window(self, key: tuple[str, str], now: float) -> deque[float]:
        q = self._fails.setdefault(key, deque())
        while q and now - q[0] > 60.0:
            q.popleft()
        return q

    def blocked(self, ip: str, name: str) -> bool:
        with self._lock:
            return len(self._window((ip, name.lower()), time.monotonic())) >= self.per_minute

    def failed(self, ip: str, name: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._window((ip, name.lower()), now).append(now)
            if len(self._fails) > 10_000:  # forget idle keys
                for k in [k for k, q in self._fails.items() if not q]:
                    del self._fails[k]


def client_ip(request: gr.Request | None) -> str:
    try:
        return request.client.host if request and request.client else "?"
    except Exception:  # noqa: BLE001
        return "?"


def login(rt: Runtime, limiter: LoginLimiter, name: str, password: str,
          request: gr.Request | None) -> dict:
    """A new session dict, or gr.Error with a plain reason."""
    name = (name or "").strip()
    ip = client_ip(request)
    if not name or not password:
        raise gr.Error("Enter your user name and password.")
    if limiter.blocked(ip, name):
        raise gr.Error("Too many failed sign-ins. Wait a minute and try again.")
    user = users.authenticate(rt, name, password)
    if user is None:
        limiter.failed(ip, name)
        raise gr.Error("Wrong user name or password.")
    return {"user_id": user.id, "login_at": time.time()}


def current(rt: Runtime, session: dict | None) -> users.UserInfo | None:
    """The signed-in, active, unexpired user of a session, else None."""
    if not isinstance(session, dict) or "user_id" not in session:
        return None
    age = time.time() - float(session.get("login_at", 0))
    if age > rt.settings.server.session_hours * 3600 or age < -60:
        return None
    return users.get_user(rt, int(session["user_id"]))


def require(rt: Runtime, session: dict | None, role: str = "rater") -> users.UserInfo:
    """The session's user if they hold `role` (admins hold every role); else gr.Error."""
    user = current(rt, session)
    if user is None:
        if isinstance(session, dict) and "user_id" in session:
            raise gr.Error("Your session has expired. Sign in again.")
        raise gr.Error("Sign in first.")
    if ROLE_RANK.get(user.role, 0) < ROLE_RANK[role]:
        raise gr.Error(f"This needs the {role} role.")
    return user


def guarded(rt: Runtime, role: str):
    """Decorator for handlers whose first argument is the session: checks the role on the
    server before the handler runs and passes the user as keyword `user`."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(session, *args, **kwargs):
            user = require(rt, session, role)
            return fn(session, *args, user=user, **kwargs)

        return inner

    return wrap
