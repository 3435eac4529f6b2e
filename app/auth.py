"""Sign-in: an HttpOnly cookie from a real HTTP response, bound to the page sessions that use it.

Gradio keys each page's server-side state (`gr.State`) by a session id that travels in URLs
(`queue/data?session_hash=...`), logs and referrers; it cannot be the credential. So:

- `POST <root>/studio/signin` (name + password, JSON) answers with a random token in the cookie
  `studio_session` (HttpOnly: no script reads it; SameSite=Strict: no other site's request
  carries it; Secure over HTTPS; Max-Age = `server.session_hours`). Only a digest of the token
  is kept, in memory (`SIGN_INS`): a restart signs everyone out, as it drops every `gr.State`.
- The page's `login` event then binds its session id to that sign-in (`do_login` in
  app/main.py): the `gr.State` holds the user id and the sign-in's digest.
- `SessionGuard`, an ASGI middleware in front of every route, refuses (403) a request that
  names a session id bound to a live sign-in without that sign-in's cookie — an event, the
  reply stream `queue/data` (also cut when the id is bound while it is open), a heartbeat —
  and any request whose `Origin` is not the page's own.
- Every handler re-reads the user (`require`): the sign-in must still be live (not signed out,
  not older than `server.session_hours`) and the account active with the role.

Failed sign-ins are rate-limited per client IP + user name (`server.login_attempts_per_minute`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import gradio as gr
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backend import users
from backend.runtime import Runtime

ROLE_RANK = {"rater": 1, "admin": 2}
COOKIE = "studio_session"
SIGNIN_PATH = "/studio/signin"
SIGNOUT_PATH = "/studio/signout"

_ROOT_JS = ("const root = ((window.gradio_config && window.gradio_config.root) || "
            "location.href.replace(/[?#].*$/, '')).replace(/\\/+$/, '');")
SIGNIN_JS = f"""async (note) => {{
  {_ROOT_JS}
  const value = (q) => {{ const e = document.querySelector(q); return e ? e.value : ""; }};
  const body = JSON.stringify({{name: value("#login-name textarea, #login-name input"),
                               password: value("#login-password input")}});
  try {{
    const r = await fetch(root + "{SIGNIN_PATH}", {{method: "POST", credentials: "same-origin",
      headers: {{"Content-Type": "application/json"}}, body}});
    if (r.ok) return [""];
    const reply = await r.json().catch(() => ({{}}));
    return [reply.error || ("Sign-in failed (HTTP " + r.status + ").")];
  }} catch (e) {{ return ["The server could not be reached. Try again."]; }}
}}"""
"""The Sign in button's page script: the name and password go to `POST /studio/signin` (which
sets the cookie), never into a Gradio event; the `login` event then gets only what that request
answered when it failed."""
SIGNOUT_JS = f"""async (sess) => {{
  {_ROOT_JS}
  try {{ await fetch(root + "{SIGNOUT_PATH}", {{method: "POST", credentials: "same-origin"}});
  }} catch (e) {{}}
  return [sess];
}}"""


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


# --- sign-ins ----------------------------------------------------------------------------------
def digest(token: str | None) -> str | None:
    return hashlib.sha256(token.encode()).hexdigest() if token else None


@dataclass
class SignIn:
    user_id: int
    login_at: float
    expires_at: float
    sessions: set[str] = field(default_factory=set)
    """Gradio session ids of the pages bound to this sign-in."""


class SignIns:
    """Live sign-ins by token digest, and which page session belongs to which."""

    def __init__(self):
        self._by_digest: dict[str, SignIn] = {}
        self._owner: dict[str, str] = {}  # session id -> digest
        self._lock = threading.Lock()

    def open(self, user_id: int, hours: float) -> str:
        """A new sign-in; returns its token (the cookie value, never stored)."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            self._purge(now)
            self._by_digest[digest(token)] = SignIn(int(user_id), now, now + hours * 3600)
        return token

    def live(self, dig: str | None) -> SignIn | None:
        with self._lock:
            s = self._by_digest.get(dig) if dig else None
            return s if s is not None and time.time() < s.expires_at else None

    def close(self, dig: str | None) -> None:
        with self._lock:
            s = self._by_digest.pop(dig, None) if dig else None
            for sh in s.sessions if s else ():
                self._owner.pop(sh, None)

    def bind(self, dig: str, session_hash: str) -> None:
        with self._lock:
            if dig in self._by_digest:
                self._by_digest[dig].sessions.add(session_hash)
                self._owner[session_hash] = dig

    def may_use(self, session_hash: str | None, dig: str | None) -> bool:
        """False when the session id belongs to a live sign-in other than the cookie's."""
        if not session_hash:
            return True
        with self._lock:
            owner = self._owner.get(session_hash)
            s = self._by_digest.get(owner) if owner else None
            return s is None or time.time() >= s.expires_at or owner == dig

    def _purge(self, now: float) -> None:
        for dig in [d for d, s in self._by_digest.items() if now >= s.expires_at]:
            for sh in self._by_digest.pop(dig).sessions:
                self._owner.pop(sh, None)


SIGN_INS = SignIns()
"""One per server process (one app per process)."""


def client_ip(request) -> str:
    try:
        return request.client.host if request and request.client else "?"
    except Exception:  # noqa: BLE001
        return "?"


def cookie_digest(request) -> str | None:
    """Digest of the request's sign-in cookie (a gr.Request or a Starlette request)."""
    try:
        return digest(request.cookies.get(COOKIE)) if request is not None else None
    except Exception:  # noqa: BLE001
        return None


def session_for(rt: Runtime, request: gr.Request) -> dict:
    """The `gr.State` value of a page whose request carries a live sign-in cookie; binds the
    page's session id to it. gr.Error when there is none."""
    dig = cookie_digest(request)
    sign_in = SIGN_INS.live(dig)
    if sign_in is None or users.get_user(rt, sign_in.user_id) is None:
        raise gr.Error("Sign in first.")
    if request.session_hash:
        SIGN_INS.bind(dig, request.session_hash)
    return {"user_id": sign_in.user_id, "login_at": sign_in.login_at, "sign_in": dig}


def remaining_s(session: dict | None) -> float:
    """Seconds until the session's sign-in expires (0 when it is not live)."""
    s = SIGN_INS.live(session.get("sign_in")) if isinstance(session, dict) else None
    return max(0.0, s.expires_at - time.time()) if s else 0.0


def current(rt: Runtime, session: dict | None) -> users.UserInfo | None:
    """The signed-in, active user of a session whose sign-in is live, else None."""
    if not isinstance(session, dict) or "user_id" not in session:
        return None
    s = SIGN_INS.live(session.get("sign_in"))
    if s is None or s.user_id != int(session["user_id"]):
        return None
    return users.get_user(rt, s.user_id)


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


# --- HTTP: sign-in routes and the guard --------------------------------------------------------
def routes(rt: Runtime) -> list[Route]:
    """`POST /studio/signin` and `POST /studio/signout` (added beside Gradio's own routes)."""
    limiter = LoginLimiter(rt.settings.server.login_attempts_per_minute)
    hours = rt.settings.server.session_hours

    async def signin(request: Request):
        try:
            body = json.loads(await request.body() or b"{}")
            name, password = str(body.get("name") or "").strip(), str(body.get("password") or "")
        except (ValueError, AttributeError):
            return JSONResponse({"error": "Send JSON with a name and a password."}, 400)
        ip = client_ip(request)
        if not name or not password:
            return JSONResponse({"error": "Enter your user name and password."}, 400)
        if limiter.blocked(ip, name):
            return JSONResponse({"error": "Too many failed sign-ins. Wait a minute and try "
                                          "again."}, 429)
        from starlette.concurrency import run_in_threadpool

        user = await run_in_threadpool(users.authenticate, rt, name, password)  # Argon2: ~50 ms
        if user is None:
            limiter.failed(ip, name)
            return JSONResponse({"error": "Wrong user name or password."}, 401)
        SIGN_INS.close(cookie_digest(request))  # a new sign-in replaces this browser's old one
        token = SIGN_INS.open(user.id, hours)
        reply = JSONResponse({"user": user.name, "role": user.role})
        reply.set_cookie(COOKIE, token, max_age=int(hours * 3600), path="/", httponly=True,
                         samesite="strict", secure=_https(request))
        return reply

    async def signout(request: Request):
        SIGN_INS.close(cookie_digest(request))
        reply = JSONResponse({"signed_out": True})
        reply.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                            secure=_https(request))
        return reply

    return [Route(SIGNIN_PATH, signin, methods=["POST"]),
            Route(SIGNOUT_PATH, signout, methods=["POST"])]


def _https(request: Request) -> bool:
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip() == "https"


def _host_of(headers: dict[str, str]) -> str:
    return (headers.get("x-forwarded-host") or headers.get("host") or "").split(",")[0].strip()


def foreign_origin(headers: dict[str, str]) -> bool:
    """A request sent by a page of another site (its `Origin` names another host)."""
    origin = headers.get("origin")
    if origin is None:
        return False  # not sent by a browser for another site (scripts send none)
    return urlsplit(origin).netloc.lower() != _host_of(headers).lower() or origin == "null"


def _path_session(path: str) -> str | None:
    """The session id in Gradio routes that carry it in the path."""
    for marker in ("/gradio_api/heartbeat/", "/gradio_api/stream/"):
        if marker in path:
            return path.split(marker, 1)[1].split("/", 1)[0] or None
    return None


class StreamCut(Exception):
    """Raised into a reply stream whose session was bound to another sign-in meanwhile."""


class SessionGuard:
    """ASGI middleware: foreign `Origin` refused; a session id bound to a live sign-in used
    only with that sign-in's cookie (module docstring)."""

    MAX_JSON = 1 << 20

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        if foreign_origin(headers):
            return await _refuse(send, "requests from another site are refused")
        path = scope.get("path", "")
        if "/gradio_api/" not in path:
            return await self.app(scope, receive, send)
        dig = digest(_cookie(headers.get("cookie", "")))
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        session = (query.get("session_hash") or [None])[0] or _path_session(path)
        if session is None and scope.get("method") == "POST" and \
                headers.get("content-type", "").startswith("application/json"):
            body, receive = await _buffered(receive, self.MAX_JSON)
            try:
                parsed = json.loads(body or b"{}")
                session = parsed.get("session_hash") if isinstance(parsed, dict) else None
            except ValueError:
                session = None
        if not SIGN_INS.may_use(session, dig):
            return await _refuse(send, "this page session belongs to another sign-in")
        if session is None:
            return await self.app(scope, receive, send)

        async def guarded_send(message):
            # a reply stream opened before the session was bound ends at its next message
            if message["type"] == "http.response.body" and not SIGN_INS.may_use(session, dig):
                raise StreamCut(session)
            await send(message)

        return await self.app(scope, receive, guarded_send)


def _cookie(header: str) -> str | None:
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == COOKIE:
            return v or None
    return None


async def _buffered(receive, limit: int):
    """The request body (up to `limit` bytes kept for parsing) and a `receive` that replays
    it to the app."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        more = message.get("more_body", False)
    body = b"".join(chunks)
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return (body if size <= limit else b""), replay


async def _refuse(send, why: str) -> None:
    reply = json.dumps({"error": f"Refused: {why}."}).encode()
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(reply)).encode())]})
    await send({"type": "http.response.body", "body": reply})
