"""One gr.Blocks from the tab modules, plus the launch settings."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from app import auth
from app.admin import build_admin
from app.common import esc
from app.leaderboard import build_leaderboard
from app.listen import build_listen
from app.rate import KEYS_JS, build_rate
from backend import world
from backend.runtime import Runtime

STATIC = Path(__file__).resolve().parent.parent / "static"


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


def build_app(rt: Runtime) -> gr.Blocks:
    limiter = auth.LoginLimiter(rt.settings.server.login_attempts_per_minute)
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
                    name = gr.Textbox(label="User name", elem_id="login-name")
                    password = gr.Textbox(label="Password", type="password",
                                          elem_id="login-password")
                    login_btn = gr.Button("Sign in", variant="primary", elem_id="login-btn")
                logout_btn = gr.Button("Sign out", size="sm", visible=False,
                                       elem_id="logout-btn")
        banner = gr.Markdown(elem_id="studio-world-banner")
        with gr.Tabs():
            with gr.Tab("Listen", id="listen", elem_id="tab-listen"):
                listen_search, query, pick, listen_status = build_listen(rt)
            with gr.Tab("Rate", id="rate", elem_id="tab-rate") as rate_tab:
                load_task, hidden_rate, rate_outputs = build_rate(rt, session)
            with gr.Tab("Leaderboard", id="leaderboard", elem_id="tab-leaderboard") as lb_tab:
                lb_show, lb_source, lb_outputs = build_leaderboard(rt)
            with gr.Tab("Admin", id="admin", elem_id="tab-admin", visible=False) as admin_tab:
                admin_refresh, admin_outputs, timer = build_admin(rt, session)

        def do_login(n, p, request: gr.Request):
            sess = auth.login(rt, limiter, n, p, request)
            user = auth.current(rt, sess)
            return (sess, f"Signed in as **{esc(user.name)}** ({user.role}).",
                    gr.Accordion(visible=False), gr.Button(visible=True), "",
                    gr.Tab(visible=user.is_admin), gr.Timer(active=user.is_admin))

        def do_logout():
            return (None, "Signed out.", gr.Accordion(visible=True, open=False),
                    gr.Button(visible=False), "", gr.Tab(visible=False), gr.Timer(active=False))

        def rate_if_signed_in(sess):
            if auth.current(rt, sess) is None:
                return hidden_rate()
            return load_task(sess)

        def admin_if_admin(sess):
            u = auth.current(rt, sess)
            if u is None or not u.is_admin:
                return [gr.update() for _ in admin_outputs]
            return admin_refresh(sess)

        login_outputs = [session, who, login_box, logout_btn, password, admin_tab, timer]
        ev = login_btn.click(do_login, [name, password], login_outputs, api_name="login")
        ev2 = password.submit(do_login, [name, password], login_outputs,
                              api_visibility="private")
        for e in (ev, ev2):
            e.success(rate_if_signed_in, [session], rate_outputs, api_visibility="private") \
                .then(admin_if_admin, [session], admin_outputs, api_visibility="private")
        logout_btn.click(do_logout, None, login_outputs, api_name="logout") \
            .then(rate_if_signed_in, [session], rate_outputs, api_visibility="private")
        rate_tab.select(rate_if_signed_in, [session], rate_outputs, api_visibility="private")
        lb_tab.select(lb_show, [lb_source], lb_outputs, api_visibility="private")
        admin_tab.select(admin_if_admin, [session], admin_outputs, api_visibility="private")
        demo.load(lambda: world_banner(rt), None, [banner], api_visibility="private")
        # while the world is being built, the banner follows the build's stage and ETA
        banner_timer = gr.Timer(rt.settings.server.poll_seconds,
                                active=rt.settings.world == "mini"
                                and "error" in world.bundle_info(rt.settings))
        banner_timer.tick(lambda: world_banner(rt), None, [banner], api_visibility="private",
                          show_progress="hidden")
        demo.load(listen_search, [query], [pick, listen_status], api_visibility="private")
    return demo


def launch_kwargs(rt: Runtime, host: str, port: int, root_path: str) -> dict:
    s = rt.settings
    audio = s.audio_dir
    for d in (audio, s.data_dir / "reports", s.exports_dir):
        d.mkdir(parents=True, exist_ok=True)
    return {
        "server_name": host,
        "server_port": port,
        "root_path": root_path or None,
        "allowed_paths": [str(audio), str(s.data_dir / "reports")],
        # exports hold every judgment: never served by path, even to a guessed URL (an admin
        # downloads a private copy, app/admin/exports.py)
        "blocked_paths": [str(s.exports_dir)],
        "footer_links": ["api", "settings"],
        "css_paths": [str(STATIC / "app.css")],
        "head": KEYS_JS,
        "ssr_mode": False,
        "show_error": True,
        "max_file_size": f"{int(s.rating.max_upload_mb * 2 + 1)}mb",
        "share": False,
        "pwa": False,
        "mcp_server": False,
        "enable_monitoring": False,
        "quiet": False,
    }
