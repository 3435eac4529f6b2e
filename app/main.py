"""One gr.Blocks from the tab modules, plus the launch settings."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from app import auth
from app.admin import build_admin
from app.common import esc
from app.leaderboard import build_leaderboard
from app.listen import build_listen
from app.rate import KEYS_JS, build_rate, clip_routes
from backend import jobs, world
from backend.runtime import Runtime

STATIC = Path(__file__).resolve().parent.parent / "static"
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto",
                "DejaVu Sans", "sans-serif"]
"""One font for all text: the system's sans-serif (no font files served or fetched; the
theme's own font has too few weights, so bold text mixed in another font's glyphs)."""


def theme() -> gr.themes.Base:
    return gr.themes.Default(font=SYSTEM_FONTS,
                             font_mono=["ui-monospace", "DejaVu Sans Mono", "monospace"])


def world_banner(rt: Runtime) -> str:
    if rt.settings.world == "mini" and "error" in world.bundle_info(rt.settings):
        from app.admin.world import build_progress

        building = build_progress(world.build_status(rt.settings.bundle_dir))
        if building:
            return f"{building}. Reload the page when it is done."
        return ("**The mini world is not built yet**, so nothing can be generated or judged "
                "here. An operator runs `python -m backend bootstrap`; stored prompts, samples "
                "and ratings still work.")
    return ""


def _recheck(sess) -> gr.Timer:
    """The session timer set to tick when the sign-in expires, or in 5 minutes if sooner (an
    account deactivated meanwhile is then noticed too)."""
    return gr.Timer(value=max(1.0, min(auth.remaining_s(sess) + 0.5, 300.0)), active=True)


def build_app(rt: Runtime) -> gr.Blocks:
    with gr.Blocks(title="Align-SLM Studio", analytics_enabled=False) as demo:
        session = gr.State(None)
        with gr.Row(elem_id="studio-header", equal_height=False):
            with gr.Column(scale=3, min_width=240):
                gr.Markdown("# Align-SLM Studio\nSpoken language model continuations, judged "
                            "by AI and by people, improved by DPO rounds.")
            with gr.Column(scale=2, min_width=240):
                who = gr.Markdown("Not signed in.", elem_id="studio-who")
                with gr.Accordion("Sign in (raters and admins)", open=False,
                                  elem_id="signin-box") as login_box:
                    # read by the page script (auth.SIGNIN_JS), not event inputs: interactive
                    # set, as Gradio would otherwise render them read-only
                    gr.Textbox(label="User name", elem_id="login-name", interactive=True)
                    password = gr.Textbox(label="Password", type="password",
                                          elem_id="login-password", interactive=True)
                    login_btn = gr.Button("Sign in", variant="primary", elem_id="login-btn")
                logout_btn = gr.Button("Sign out", size="sm", visible=False,
                                       elem_id="logout-btn")
                # what the page's sign-in request answered when it failed (auth.SIGNIN_JS)
                signin_note = gr.Textbox(visible=False)
                session_timer = gr.Timer(active=False)
        banner = gr.Markdown(elem_id="studio-world-banner")
        with gr.Tabs(overflow_behavior="wrap"):  # every tab in sight on a phone
            with gr.Tab("Listen", id="listen", elem_id="tab-listen"):
                listen = build_listen(rt)
            with gr.Tab("Rate", id="rate", elem_id="tab-rate") as rate_tab:
                load_task, hidden_rate, rate_outputs = build_rate(rt, session)
            with gr.Tab("Leaderboard", id="leaderboard", elem_id="tab-leaderboard") as lb_tab:
                lb_show, lb_source, lb_outputs = build_leaderboard(rt)
            with gr.Tab("Admin", id="admin", elem_id="tab-admin", visible=False) as admin_tab:
                admin_refresh, admin_outputs, timer = build_admin(rt, session)

        def do_login(note, request: gr.Request):
            if note:
                raise gr.Error(note)
            sess = auth.session_for(rt, request)
            user = auth.current(rt, sess)
            return (sess, f"Signed in as **{esc(user.name)}** ({user.role}).",
                    gr.Accordion(visible=False), gr.Button(visible=True), "",
                    gr.Tab(visible=user.is_admin), gr.Timer(active=user.is_admin),
                    _recheck(sess))

        def signed_out(message: str):
            return (None, message, gr.Accordion(visible=True, open=False),
                    gr.Button(visible=False), "", gr.Tab(visible=False), gr.Timer(active=False),
                    gr.Timer(active=False))

        def do_logout(sess):
            auth.SIGN_INS.close(sess.get("sign_in") if isinstance(sess, dict) else None)
            return signed_out("Signed out.")

        def check_session(sess):
            """The session timer's tick: the page says so once the sign-in is no longer valid
            (expired, signed out elsewhere, account deactivated)."""
            if auth.current(rt, sess) is None:
                return signed_out("Your session has expired. Sign in again.")
            return (*[gr.skip()] * (len(login_outputs) - 1), _recheck(sess))

        def rate_if_signed_in(sess, request: gr.Request):
            if auth.current(rt, sess) is None:
                return hidden_rate()
            return load_task(sess, request)

        def admin_if_admin(sess):
            u = auth.current(rt, sess)
            if u is None or not u.is_admin:
                return [gr.update() for _ in admin_outputs]
            return admin_refresh(sess)

        login_outputs = [session, who, login_box, logout_btn, password, admin_tab, timer,
                         session_timer]
        ev = login_btn.click(do_login, [signin_note], login_outputs, api_name="login",
                             js=auth.SIGNIN_JS)
        ev2 = password.submit(do_login, [signin_note], login_outputs, js=auth.SIGNIN_JS,
                              api_visibility="private")
        for e in (ev, ev2):
            e.success(rate_if_signed_in, [session], rate_outputs, api_visibility="private") \
                .then(admin_if_admin, [session], admin_outputs, api_visibility="private")
        logout_btn.click(do_logout, [session], login_outputs, api_name="logout",
                         js=auth.SIGNOUT_JS) \
            .then(rate_if_signed_in, [session], rate_outputs, api_visibility="private")
        session_timer.tick(check_session, [session], login_outputs, api_visibility="private") \
            .then(rate_if_signed_in, [session], rate_outputs, api_visibility="private")
        rate_tab.select(rate_if_signed_in, [session], rate_outputs, api_visibility="private")
        lb_tab.select(lb_show, [lb_source], lb_outputs, api_visibility="private")
        admin_tab.select(admin_if_admin, [session], admin_outputs, api_visibility="private")
        # while the world is missing or being built, the banner follows the build's stage and
        # ETA; the page's load decides whether to poll, and polling stops once it is built
        banner_timer = gr.Timer(rt.settings.server.poll_seconds, active=False)

        def banner_state():
            text = world_banner(rt)
            return text, gr.Timer(active=bool(text))

        demo.load(banner_state, None, [banner, banner_timer], api_visibility="private")
        banner_timer.tick(banner_state, None, [banner, banner_timer], api_visibility="private",
                          show_progress="hidden")
        demo.load(listen.open, None, listen.outputs, api_visibility="private")

        # every view refreshes itself when a job ends (a round's new version, new scores):
        # the timer reads one cheap signature; only its change reruns the views' loads
        # (`seen` takes the first reading silently; `ended` changes only when a job ended)
        seen, ended = gr.State(None), gr.State(None)
        ticker = gr.Timer(rt.settings.server.poll_seconds)

        def tick(last):
            sig = list(jobs.ended_signature(rt))
            changed = last is not None and sig != last
            return sig, (sig if changed else gr.skip()), listen.notice_text()

        ticker.tick(tick, [seen], [seen, ended, listen.notice], api_visibility="private",
                    show_progress="hidden")
        for fn, inputs, outputs in ((listen.refresh, [listen.pick], listen.outputs),
                                    (lb_show, [lb_source], lb_outputs),
                                    (admin_if_admin, [session], admin_outputs)):
            ended.change(fn, inputs, outputs, api_visibility="private", show_progress="hidden")
    return demo


def launch_kwargs(rt: Runtime, host: str, port: int, root_path: str) -> dict:
    s = rt.settings
    audio = s.audio_dir
    curves = s.data_dir / "reports" / "curves"  # the public Leaderboard's pictures
    for d in (audio, curves, s.exports_dir):
        d.mkdir(parents=True, exist_ok=True)
    return {
        "server_name": host,
        "server_port": port,
        "root_path": root_path or None,
        # the evaluation reports beside the curves (<data>/reports/<version>/) are not served
        "allowed_paths": [str(audio), str(curves)],
        # exports hold every judgment: never served by path, even to a guessed URL (an admin
        # downloads a private copy, app/admin/exports.py)
        "blocked_paths": [str(s.exports_dir)],
        "footer_links": ["api", "settings"],
        "css_paths": [str(STATIC / "app.css")],
        "theme": theme(),
        "head": KEYS_JS,
        "ssr_mode": False,
        "show_error": True,
        "max_file_size": f"{int(s.rating.max_upload_mb * 2 + 1)}mb",
        # the sign-in routes and the guard that binds page sessions to sign-ins (app/auth.py)
        "app_kwargs": {"routes": auth.routes(rt) + clip_routes(rt),
                       "middleware": [Middleware(auth.SessionGuard)]},
        "share": False,
        "pwa": False,
        "mcp_server": False,
        "enable_monitoring": False,
        "quiet": False,
    }
