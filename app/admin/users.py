"""Admin > Users: add accounts, change roles, flag or unflag a rater's votes, and the raters'
quality-control report (gold/trap accuracy, MOS variance)."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from app.admin.base import PRIVATE
from app.common import esc, md_table
from backend import rating, users
from backend.runtime import Runtime
from backend.users import UserInfo


def users_table(rt: Runtime) -> str:
    return md_table(users.list_users(rt))


def qc_table(rt: Runtime) -> str:
    """The raters' QC report, then the clean-vote rate per day and per exclusion reason."""
    return md_table(rating.rater_report(rt)) + "\n\n" + vote_accounting_table(rt)


ACCOUNTING_COLUMNS = ["day", "votes", "clean", "clean rate", "trap failed", "gold accuracy",
                      "flagged by admin", "flagged (reason unrecorded)", "trap answers",
                      "QC outages (counted)"]


def vote_accounting_table(rt: Runtime) -> str:
    """Every stored human vote per UTC day: counted (clean) or excluded, and why. Nothing is
    dropped, so a check that stops working shows as a fall in the clean rate, not as votes
    that silently vanish."""
    rows = [{"day": d["day"], "votes": d["votes"], "clean": d["clean"],
             "clean rate": f"{d['clean_rate']:.1%}", "trap failed": d["trap_failed"],
             "gold accuracy": d["gold_accuracy"], "flagged by admin": d["admin"],
             "flagged (reason unrecorded)": d["unrecorded"], "trap answers": d["trap_answer"],
             "QC outages (counted)": d["qc_outages"]}
            for d in rating.vote_accounting(rt)]
    return "#### Clean votes per day\n\n" + md_table(rows, ACCOUNTING_COLUMNS)


def create_user(rt: Runtime, user: UserInfo, name: str | None, password: str | None,
                role: str) -> tuple[str, str | gr.Markdown]:
    """(result line, the users table, or no update when refused)."""
    try:
        u = users.add_user(rt, (name or "").strip(), password or "", role)
    except users.UserError as e:
        return f"**Refused:** {esc(e)}", gr.Markdown()
    return f"Added **{esc(u.name)}** ({u.role}).", users_table(rt)


def change_role(rt: Runtime, user: UserInfo, name: str | None,
                role: str) -> tuple[str, str | gr.Markdown]:
    try:
        u = users.set_role(rt, (name or "").strip(), role)
    except users.UserError as e:
        return f"**Refused:** {esc(e)}", gr.Markdown()
    return f"**{esc(u.name)}** is now {u.role}.", users_table(rt)


def flag_rater(rt: Runtime, user: UserInfo, name: str | None,
               flag: bool) -> tuple[str, str | gr.Markdown]:
    """Flag (or unflag) all votes of a rater: (result line, the QC report)."""
    try:
        n = rating.set_flagged(rt, (name or "").strip(), flag)
    except rating.RatingError as e:
        return f"**Refused:** {esc(e)}", gr.Markdown()
    word = "Flagged" if flag else "Unflagged"
    return f"{word} {n} vote(s) of {esc(name)}.", qc_table(rt)


def build_users(rt: Runtime, admin, session: gr.State) -> SimpleNamespace:
    with gr.Tab("Users"):
        users_md = gr.Markdown(elem_id="admin-users")
        with gr.Row():
            nu_name = gr.Textbox(label="New user name")
            nu_pass = gr.Textbox(label="Password (8+ characters)", type="password")
            nu_role = gr.Dropdown(["rater", "admin"], value="rater", label="Role")
        with gr.Row():
            nu_btn = gr.Button("Add user", size="sm")
            role_btn = gr.Button("Set role of this name", size="sm")
            flag_btn = gr.Button("Flag this rater's votes", size="sm")
            unflag_btn = gr.Button("Unflag", size="sm")
        users_result = gr.Markdown()
        gr.Markdown("### Rater quality control (gold/trap accuracy, MOS variance)")
        qc_md = gr.Markdown(elem_id="admin-qc")

    @admin
    def do_add_user(sess, name, password, role, *, user=None):
        return create_user(rt, user, name, password, role)

    @admin
    def do_set_role(sess, name, role, *, user=None):
        return change_role(rt, user, name, role)

    def _flagger(flag: bool):
        @admin
        def fn(sess, name, *, user=None):
            return flag_rater(rt, user, name, flag)

        return fn

    # undocumented, not private: scripts may call it (role-checked all the same)
    nu_btn.click(do_add_user, [session, nu_name, nu_pass, nu_role], [users_result, users_md],
                 api_name="admin_add_user", api_visibility="undocumented")
    role_btn.click(do_set_role, [session, nu_name, nu_role], [users_result, users_md],
                   **PRIVATE)
    flag_btn.click(_flagger(True), [session, nu_name], [users_result, qc_md], **PRIVATE)
    unflag_btn.click(_flagger(False), [session, nu_name], [users_result, qc_md], **PRIVATE)
    return SimpleNamespace(users_md=users_md, qc_md=qc_md)
