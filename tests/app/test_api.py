"""The running server through its HTTP API (gradio_client): roles are enforced on the server for
every event, whatever the page shows."""

from __future__ import annotations

import pytest

from tests.app.conftest import ADMIN_PASSWORD, RATER_PASSWORD

gradio_client = pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402


@pytest.fixture
def client(server):
    c = gradio_client.Client(server.url, verbose=False, download_files=False)
    yield c
    c.close()


def _login(client, name, password):
    return client.predict(name, password, api_name="/login")


def test_anonymous_cannot_vote_or_skip(client):
    with pytest.raises(AppError, match="Sign in"):
        client.predict("A", None, None, None, None, api_name="/rate_vote")
    with pytest.raises(AppError, match="Sign in"):
        client.predict(api_name="/rate_skip")


def test_anonymous_cannot_reach_admin_events(client):
    with pytest.raises(AppError, match="Sign in"):
        client.predict("mallory", "password-123", "admin", api_name="/admin_add_user")


def test_rater_cannot_reach_admin_events(client, seeded):
    rt, _ = seeded
    _login(client, "rater4", RATER_PASSWORD)
    with pytest.raises(AppError, match="admin role"):
        client.predict("mallory", "password-123", "admin", api_name="/admin_add_user")
    with pytest.raises(AppError, match="admin role"):
        client.predict("generate", None, "", None, "{}", api_name="/admin_start_job")
    from backend import users

    assert "mallory" not in [u["name"] for u in users.list_users(rt)]


def test_rater_cannot_vote_before_playing(client):
    _login(client, "rater4", RATER_PASSWORD)
    with pytest.raises(AppError, match="[Pp]lay both clips|No task"):
        client.predict("A", None, None, None, None, api_name="/rate_vote")


def test_wrong_password_is_refused_and_rate_limited(client):
    for _ in range(10):
        with pytest.raises(AppError, match="Wrong user name or password"):
            _login(client, "ratelimited", "not-the-password")
    with pytest.raises(AppError, match="Too many"):
        _login(client, "ratelimited", "not-the-password")


def test_admin_can_add_user(client, seeded):
    rt, _ = seeded
    _login(client, "admin", ADMIN_PASSWORD)
    client.predict("newrater", "new-rater-pass", "rater", api_name="/admin_add_user")
    from backend import users

    assert users.find_user(rt, "newrater").role == "rater"


def test_admin_event_hidden_from_api_docs(client):
    info = client.view_api(print_info=False, return_format="dict")
    names = set(info["named_endpoints"])
    assert "/login" in names and "/rate_vote" in names
    assert "/admin_add_user" not in names  # undocumented (still role-checked)


def test_no_cookie_carries_a_sign_in(server):
    """CSRF: a sign-in is server-side session state keyed by the id the page's own script sends
    with each event, never a cookie that a browser would attach to a request another site makes.
    The page, the sign-in and a rater's events set no cookie; the same event under any other
    session id (all that a forged cross-site request can send) is not signed in."""
    import httpx

    from tests.reliability.rater_client import ApiError, GradioSession, Rater

    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "set-cookie" not in page.headers
    rater = Rater(server.url, "rater4", RATER_PASSWORD)
    forged = GradioSession(server.url)
    try:
        rater.login()
        rater.load_task()
        rater.play_both()
        assert not rater.session.http.cookies, dict(rater.session.http.cookies)
        forged.http.headers["Origin"] = "https://elsewhere.example"
        with pytest.raises(ApiError, match="Sign in"):
            forged.call("rate_vote", "A", None, None, None, None)
    finally:
        forged.close()
        rater.close()


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
    through Gradio's file route, signed in or not (it was: 200 for a guessed name)."""
    import urllib.error
    import urllib.request

    from backend import exports

    rt, _ = seeded
    path = exports.export_file(rt, "judgments", "csv")
    assert path.is_file() and path.parent == rt.settings.exports_dir
    for url in (f"{server.url}/gradio_api/file={path}",
                f"{server.url}/gradio_api/file={rt.settings.exports_dir}/../exports/{path.name}"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code in (403, 404), url
