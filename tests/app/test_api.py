"""The running server through its HTTP API (plain HTTP as a script would send it, and
gradio_client for the API docs): roles are enforced on the server for every event, whatever the
page shows; a sign-in is a cookie bound to the page sessions that use it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.app.conftest import ADMIN_PASSWORD, RATER_PASSWORD
from tests.reliability.rater_client import ApiError, CallFailed, GradioSession

gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture
def client(server):
    c = GradioSession(server.url)
    yield c
    c.close()


def test_anonymous_cannot_vote_or_skip(client):
    with pytest.raises(ApiError, match="Sign in"):
        client.call("rate_vote", "A", None, None, None, None)
    with pytest.raises(ApiError, match="Sign in"):
        client.call("rate_skip")


def test_anonymous_cannot_reach_admin_events(client):
    with pytest.raises(ApiError, match="Sign in"):
        client.call("admin_add_user", "mallory", "password-123", "admin")
    with pytest.raises(ApiError, match="Sign in"):  # the login event without a sign-in cookie
        client.call("login", "")


def test_rater_cannot_reach_admin_events(client, seeded):
    rt, _ = seeded
    client.sign_in("rater4", RATER_PASSWORD)
    with pytest.raises(ApiError, match="admin role"):
        client.call("admin_add_user", "mallory", "password-123", "admin")
    with pytest.raises(ApiError, match="admin role"):
        client.call("admin_start_job", "generate", None, "", None, "{}")
    from backend import users

    assert "mallory" not in [u["name"] for u in users.list_users(rt)]


def test_rater_cannot_vote_before_listening(client):
    client.sign_in("rater4", RATER_PASSWORD)
    with pytest.raises(ApiError, match="[Ll]isten to both clips|No task"):
        client.call("rate_vote", "A", None, None, None, None)


def test_wrong_password_is_refused_and_rate_limited(client):
    for _ in range(10):
        with pytest.raises(ApiError, match="Wrong user name or password"):
            client.sign_in("ratelimited", "not-the-password")
    with pytest.raises(ApiError, match="Too many"):
        client.sign_in("ratelimited", "not-the-password")


def test_admin_can_add_user(client, seeded):
    rt, _ = seeded
    client.sign_in("admin", ADMIN_PASSWORD)
    client.call("admin_add_user", "newrater", "new-rater-pass", "rater")
    from backend import users

    assert users.find_user(rt, "newrater").role == "rater"


def test_admin_event_hidden_from_api_docs(server):
    c = gradio_client.Client(server.url, verbose=False, download_files=False)
    try:
        info = c.view_api(print_info=False, return_format="dict")
    finally:
        c.close()
    names = set(info["named_endpoints"])
    assert "/login" in names and "/rate_vote" in names
    assert "/admin_add_user" not in names  # undocumented (still role-checked)


def test_a_replayed_session_id_gets_no_admin_data(server):
    """Issue 20, item 7: the page's session id travels in URLs (`queue/data?session_hash=`),
    so it must not be the credential. An admin signs in (an HttpOnly, SameSite=Strict cookie,
    never in a URL) and their page session gets the users table. The same session id from
    another client - with no cookie, with a foreign Origin, or with another user's sign-in -
    is refused before any handler runs, for events and for the reply stream; the admin's own
    calls still work. Before, the replay returned the users table."""
    admin, thief, rater = (GradioSession(server.url) for _ in range(3))
    try:
        r = admin.http.post(server.url + "/studio/signin",
                            json={"name": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 200, r.text
        flags = {f.strip().split("=")[0].lower() for f in r.headers["set-cookie"].split(";")}
        assert {"httponly", "samesite"} <= flags and "samesite=strict" in \
            r.headers["set-cookie"].lower()
        token = admin.http.cookies["studio_session"]
        admin.call("login", "")
        table = admin.call("admin_add_user", "replay1", "password-123", "rater")[1]
        assert "| admin | admin |" in table  # the admin data a replay must not get

        thief.session_hash = admin.session_hash  # no cookie
        with pytest.raises(CallFailed, match="403"):
            thief.call("admin_add_user", "replay2", "password-123", "rater")
        stream = thief.http.get("/queue/data", params={"session_hash": admin.session_hash})
        assert stream.status_code == 403 and "replay" not in stream.text

        rater.sign_in("rater4", RATER_PASSWORD)  # someone else's valid sign-in
        rater.session_hash = admin.session_hash
        with pytest.raises(CallFailed, match="403"):
            rater.call("admin_add_user", "replay3", "password-123", "rater")

        thief.http.cookies.set("studio_session", token)  # even the cookie, from another site
        thief.http.headers["Origin"] = "https://elsewhere.example"
        with pytest.raises(CallFailed, match="403"):
            thief.call("admin_add_user", "replay4", "password-123", "rater")
        foreign = thief.http.post(server.url + "/studio/signin", json={
            "name": "admin", "password": ADMIN_PASSWORD})
        assert foreign.status_code == 403 and "set-cookie" not in foreign.headers

        assert "replay5" in admin.call("admin_add_user", "replay5", "password-123", "rater")[1]
        assert "replay2" not in admin.call("admin_add_user", "replay6", "password-123",
                                            "rater")[1]
    finally:
        for c in (admin, thief, rater):
            c.close()


def test_signing_out_ends_the_sign_in_everywhere(server):
    """After sign-out, neither the page session nor the old cookie value signs anyone in."""
    page = GradioSession(server.url)
    other = GradioSession(server.url)
    try:
        page.sign_in("rater4", RATER_PASSWORD)
        token = page.http.cookies["studio_session"]
        page.call("logout")
        page.http.post(server.url + "/studio/signout")
        with pytest.raises(ApiError, match="Sign in"):
            page.call("rate_skip")
        other.http.cookies.set("studio_session", token)
        with pytest.raises(ApiError, match="Sign in"):
            other.call("login", "")
    finally:
        page.close()
        other.close()


def test_malformed_vote_events_are_refused_and_store_nothing(server, seeded):
    """Events as a script could send them: wrong types, values outside the choices, missing or
    extra fields. Each is refused with a message; no judgment is stored; a proper vote after
    them is stored once."""
    from backend import rating, users
    from tests.reliability.rater_client import ApiError, Rater

    rt, _ = seeded

    def human_judgments() -> int:
        return len(rating.votes_of(rt, users.find_user(rt, "rater3").id))

    rater = Rater(server.url, "rater3", RATER_PASSWORD)
    try:
        rater.login()
        assert rater.load_task()
        rater.play_both()
        before = human_judgments()
        bad_calls = [  # (event data, what the refusal says)
            ((123, None, None, None, None), "choice must be one of"),  # wrong type
            (("C", None, None, None, None), "choice must be one of"),  # not a choice
            (("", None, None, None, None), "choice must be one of"),
            (("A", "seven", None, None, None), "not in the list of choices"),  # off the scale
            (("A", 9, None, None, None), "not in the list of choices"),
            (("A", [4], None, None, None), "not in the list of choices"),
            (("A",), "enough input values"),  # fields missing
            (("A", None, None, None, None, None, "x"), "not in the list of choices"),  # extra
        ]
        for data, says in bad_calls:
            with pytest.raises(ApiError, match=says):
                rater.session.call("rate_vote", *data)
        assert human_judgments() == before
        vote = rater.vote("A")
        assert vote.saved, vote.message
        assert human_judgments() == before + 1
    finally:
        rater.close()


def test_exports_are_not_served_by_path(server, seeded):
    """An export's file name is the time it was made; its folder must not be reachable
    through Gradio's file route, signed in or not (it was: 200 for a guessed name). Nor an
    evaluation report, named after its version (200 before: the whole reports folder was an
    allowed path; now only the Leaderboard's curves are)."""
    import urllib.error
    import urllib.request

    from backend import exports

    rt, _ = seeded
    path = exports.export_file(rt, "judgments", "csv")
    assert path.is_file() and path.parent == rt.settings.exports_dir
    report = rt.settings.data_dir / "reports" / "test-aligned" / "report.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("# evaluation of test-aligned\n")
    for url in (f"{server.url}/gradio_api/file={path}",
                f"{server.url}/gradio_api/file={rt.settings.exports_dir}/../exports/{path.name}",
                f"{server.url}/gradio_api/file={report}"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code in (403, 404), url


def _rewrite_clips(paths, seconds: float) -> dict:
    """Make a task's clips `seconds` long (the seeded ones are 0.6 s); returns the old bytes."""
    import soundfile as sf

    from tests.rating.seed import SR, tone

    old = {p: Path(p).read_bytes() for p in paths}
    for p in paths:
        sf.write(p, tone(300, seconds), SR)
    return old


def test_end_events_alone_do_not_unlock_the_vote(server, seeded):
    """Issue 20, item 1, through the API: a script that only sends the player's end events
    (no played ranges), however long after the task was assigned, cannot vote; nor can one
    that claims whole clips it never fetched, or claims them at once after fetching. Fetched,
    claimed and the clips' length waited: the vote is saved."""
    from backend import rating, users
    from tests.reliability.rater_client import Rater

    rt, _ = seeded
    rater = Rater(server.url, "rater1", RATER_PASSWORD)
    try:
        rater.login()
        assert rater.load_task()
        t = rating.next_task(rt, users.find_user(rt, "rater1").id)  # the open assignment
        old = _rewrite_clips(t["audio"].values(), 4.0)
        try:
            time.sleep(4.5)  # longer than each clip since the task was assigned
            for side in ("a", "b"):
                gate = rater.session.call(f"rate_end_{side}", "")[0]
            assert "0 % heard" in gate
            with pytest.raises(ApiError, match="listen to both clips"):
                rater.session.call("rate_vote", "A", None, None, None, None)
            for side in ("a", "b"):  # whole clips claimed, never fetched
                gate = rater.session.call(f"rate_end_{side}", "[[0, 4.0]]")[0]
            assert "clip A 100 % heard, clip B 100 % heard" in gate
            with pytest.raises(ApiError, match="listen to both clips"):
                rater.session.call("rate_vote", "A", None, None, None, None)
            fetched = time.monotonic()
            for side in ("A", "B"):
                assert rater.session.http.get(rater.clips[side]).status_code == 200
                rater.session.call(f"rate_end_{side.lower()}", "[[0, 4.0]]")
            if time.monotonic() - fetched < 3.0:  # 90 % of 4 s not yet passed since served
                with pytest.raises(ApiError, match="listen to both clips"):
                    rater.session.call("rate_vote", "A", None, None, None, None)
            time.sleep(max(0.0, 3.7 - (time.monotonic() - fetched)))
            assert rater.vote("A").saved
        finally:
            for p, data in old.items():
                Path(p).write_bytes(data)
    finally:
        rater.close()


def test_rate_clips_have_opaque_addresses_for_their_rater_only(server, seeded):
    """Issue 20, item 3: a Rate clip's URL is an opaque per-assignment address answered only
    to that rater (by their sign-in cookie), never a file URL the public Listen tab shows for
    the same prompt, where each continuation is labelled with its version. Before, Rate and
    Listen gave the same `/gradio_api/file=` URL for a clip."""
    import httpx

    from backend import rating, users
    from tests.reliability.rater_client import Rater

    rt, _ = seeded
    rater, other = (Rater(server.url, n, RATER_PASSWORD) for n in ("rater2", "rater4"))
    anonymous = GradioSession(server.url)
    try:
        rater.login()
        assert rater.load_task()
        other.login()
        t = rating.next_task(rt, users.find_user(rt, "rater2").id)
        assert set(rater.clips) == {"prompt", "A", "B"}
        for url in rater.clips.values():
            assert "/studio/clip/" in url and "gradio_api" not in url, url
            assert not any(s in url for s in ("samples", ".wav", str(rt.settings.data_dir)))
        with rt.store.session() as s:
            from db.schema import RatingTask, Sample

            pid = s.get(Sample, s.get(RatingTask, t["task_id"]).sample_a_id).prompt_id
        listen = anonymous.call("listen_prompt", pid)
        listen_urls = {o["url"] for o in listen if isinstance(o, dict) and o.get("url")}
        assert len(listen_urls) >= 3  # the prompt and both versions' continuations
        assert not set(rater.clips.values()) & listen_urls
        assert all("/studio/clip/" not in u for u in listen_urls)

        mine = rater.session.http.get(rater.clips["A"])
        assert mine.status_code == 200 and mine.content == Path(t["audio"]["A"]).read_bytes()
        assert mine.headers["cache-control"] == "private, no-store"
        for client in (other.session.http, anonymous.http, httpx.Client()):
            for url in rater.clips.values():
                refused = client.get(url)
                assert refused.status_code == 404 and refused.content == b"No such clip."
        guessed = rater.clips["A"].rsplit("/", 1)[0] + "/" + "x" * 32
        assert rater.session.http.get(guessed).status_code == 404
    finally:
        for c in (rater, other):
            c.close()
        anonymous.close()
