"""Admin tab: one module per sub-tab (world, prompts, users, tasks, jobs, rounds, versions,
exports, judges) plus the job monitor below them. Each module holds plain handlers of
`(rt, user, ...)` that tests call directly, and a `build_*` that lays out its components;
events are role-checked on the server (`guarded`) whatever the page shows, and most are hidden
from the API."""

from __future__ import annotations

import gradio as gr

from app.admin import (
    dashboard,
    exports,
    jobs,
    judges,
    prompts,
    rounds,
    tasks,
    users,
    versions,
    world,
)
from app.admin.base import PRIVATE
from app.admin.jobs import JOB_KINDS
from app.admin.world import quality_summary
from app.auth import current, guarded
from backend import health, registry
from backend.runtime import Runtime
from backend.users import UserInfo

__all__ = ["JOB_KINDS", "PRIVATE", "build_admin", "quality_summary", "refresh"]


def refresh(rt: Runtime, user: UserInfo) -> tuple:
    """What every sub-tab shows, in the order of `build_admin`'s refresh outputs. The adapters
    are hashed once here, for the World text and the Versions table."""
    adapter_problems = health.check_adapters(rt)
    world_md, manifest = world.world_summary(rt, adapter_problems)
    choices = versions.version_choices(rt)
    names = [name for _, name in choices]
    base = registry.baseline(rt)
    return (world_md, manifest, users.users_table(rt), users.qc_table(rt),
            tasks.tasks_summary(rt),
            gr.Dropdown(choices=choices, value=names[-1] if names else None),
            gr.Dropdown(choices=choices, value=base.name if base else None),
            rounds.rounds_table(rt),
            versions.versions_table(rt, {p["path"] for p in adapter_problems}),
            jobs.jobs_table(rt), judges.judges_summary(rt))


def build_admin(rt: Runtime, session: gr.State):
    """The Admin tab's content. Returns (refresh handler, its outputs, the monitor's timer) for
    `app.main`, which refreshes on sign-in and tab select and starts the timer for admins."""
    admin = guarded(rt, "admin")
    with gr.Tabs(overflow_behavior="wrap"):
        world_tab = world.build_world()
        prompts.build_prompts(rt, admin, session)
        users_tab = users.build_users(rt, admin, session)
        tasks_tab = tasks.build_tasks(rt, admin, session)
        jobs_tab = jobs.build_jobs()
        rounds_tab = rounds.build_rounds(rt)
        versions_tab = versions.build_versions()
        exports.build_exports(rt, admin, session)
        judges_tab = judges.build_judges()
    monitor = jobs.build_monitor(rt, admin, session)

    # the events below reach across sub-tabs (the refresh, or a started job the monitor
    # watches), so they are wired here, once every component exists
    refresh_outputs = [world_tab.md, world_tab.manifest, users_tab.users_md, users_tab.qc_md,
                       tasks_tab.tasks_md, jobs_tab.version, rounds_tab.parent,
                       rounds_tab.rounds_md, versions_tab.versions_md, monitor.jobs_md,
                       judges_tab.judges_md]

    @admin
    def refresh_all(sess, *, user=None):
        return refresh(rt, user)

    @admin
    def do_import(sess, *, user=None):
        return world.import_bundle(rt, user)

    @admin
    def do_job(sess, kind, version, split, limit, extra, *, user=None):
        return jobs.start_job(rt, user, kind, version, split, limit, extra)

    @admin
    def do_round(sess, parent, source, n, curr, method, chosen, rejected, beta, rank, steps,
                 max_prompts, per_prompt, finetune, *, user=None):
        return rounds.queue_round(rt, user, parent, source, n, curr, method, chosen, rejected,
                                  beta, rank, steps, max_prompts, per_prompt, finetune)

    def dash_tick(sess, jid, last):
        user = current(rt, sess)
        if user is None or not user.is_admin:
            return tuple(gr.skip() for _ in rounds_tab.dash.outputs)
        return dashboard.dashboard(rt, jid, last)

    monitor.timer.tick(dash_tick, [session, monitor.watch_id, rounds_tab.dash.sig],
                       rounds_tab.dash.outputs, **PRIVATE, show_progress="hidden")
    world_tab.refresh.click(refresh_all, [session], refresh_outputs, **PRIVATE)
    world_tab.import_btn.click(do_import, [session], [monitor.watch_id, world_tab.md],
                               **PRIVATE)
    jobs_tab.start.click(do_job, [session, jobs_tab.kind, jobs_tab.version, jobs_tab.split,
                                  jobs_tab.limit, jobs_tab.params],
                         [monitor.watch_id, jobs_tab.started], api_name="admin_start_job",
                         api_visibility="undocumented")
    rounds_tab.start.click(do_round, [session, *rounds_tab.form],
                           [monitor.watch_id, rounds_tab.result], **PRIVATE)
    return refresh_all, refresh_outputs, monitor.timer
