"""Admin: world/bundle, prompt upload, users and rater QC, rating tasks, jobs (start, watch,
cancel), DPO rounds, the version registry and exports. Every handler checks the admin role on
the server (`guarded`), whatever the page shows; most are hidden from the API."""

from __future__ import annotations

import json

import gradio as gr

from app.auth import guarded
from app.common import esc, md_table, render_any
from backend import exports, health, jobs, prompts, rating, registry, traps, users, world
from backend.loop import rounds
from backend.runtime import Runtime

JOB_KINDS = ("generate", "transcribe", "judge", "evaluate", "import_prompts")
PRIVATE = {"api_visibility": "private"}


def quality_summary(manifest: dict) -> str:
    """The bundle manifest's quality figures and bars in one line (the JSON below holds all)."""
    if not manifest.get("bars"):
        return ""

    def pct(x) -> str:
        return f"{100 * x:.1f} %" if isinstance(x, (int, float)) else "?"

    bench = manifest.get("benchmarks", {})
    comp = manifest.get("components", {})
    dev = " · ".join(f"{label} {pct(bench.get(key, {}).get('dev', {}).get('accuracy'))}"
                     for key, label in (("swuggy", "sWUGGY"), ("sblimp", "sBLIMP"),
                                        ("ssc", "sSC"), ("tsc", "tSC")))
    total = manifest.get("build_seconds", {}).get("total")
    missed = sorted(k for k, ok in manifest["bars"].items() if not ok)
    verdict = (f"**all {len(manifest['bars'])} bars met**" if not missed else
               f"**bars not met:** {esc(', '.join(missed))}")
    built = f"built in {total / 60:.1f} min, " if isinstance(total, (int, float)) else ""
    return (f"**Bundle quality** ({esc(manifest.get('preset', '?'))} preset, seed "
            f"{esc(manifest.get('seed', '?'))}, {built}"
            f"{manifest.get('sizes', {}).get('bundle_mib', '?')} MiB): dev {dev} · "
            f"ASR WER {pct(comp.get('asr', {}).get('wer_vocoded_heldout'))} · judge ranks the "
            f"true ending first {pct(comp.get('judge', {}).get('rank_true_over_shuffled_asr'))}"
            f" · {verdict}")


def _whole(value) -> int | None:
    """A form number as an int; empty (or 0) means "use the configured default"."""
    return int(value) if value not in (None, "", 0) else None


def _versions(rt: Runtime) -> list[tuple[str, str]]:
    return [(f"{v['name']} ({v['kind']}, round {v['round_index']})", v["name"])
            for v in registry.list_versions(rt)]


def _lineage_rows(rt: Runtime, bad_adapters: set[str]) -> list[dict]:
    """Registry rows; `bad_adapters` = adapter paths the health check found unusable."""
    rows = []
    for v in registry.list_versions(rt):
        try:
            chain = " ← ".join(x["name"] for x in registry.lineage(rt, v["id"]))
        except Exception:  # noqa: BLE001
            chain = "?"
        rows.append({"id": v["id"], "name": v["name"], "kind": v["kind"],
                     "round": v["round_index"], "lineage": chain,
                     "adapter ok": v["adapter_path"] not in bad_adapters
                     if v["adapter_path"] else "",
                     "created": str(v["created_at"])[:19]})
    return rows


def _job_kinds() -> list[str]:
    jobs.load_handlers()
    return [k for k in JOB_KINDS if k in jobs.HANDLERS]


def _jobs_table(rt: Runtime) -> str:
    rows = [{"id": j["id"], "kind": j["kind"], "status": j["status"],
             "progress": f"{100 * (j['progress'] or 0):.0f}%", "message": j["message"],
             "created": str(j["created_at"])[:19]} for j in jobs.list_jobs(rt, 25)]
    return md_table(rows)


def _job_detail(rt: Runtime, job_id) -> tuple[str, str, str]:
    if job_id in (None, "", 0):
        return "_choose a job_", "", ""
    try:
        j = jobs.get(rt, int(job_id))
    except ValueError as e:
        return f"**{esc(e)}**", "", ""
    pct = 100 * (j["progress"] or 0)
    bar = "█" * int(pct // 5) + "░" * (20 - int(pct // 5))
    head = (f"**Job {j['id']} — {esc(j['kind'])}: {esc(j['status'])}** `{bar}` {pct:.0f}%  \n"
            f"{esc(j['message'])}")
    if j["error"]:
        head += f"  \n**Error:** {esc(j['error'])}"
    metrics = render_any(j["result"]) if j["result"] else "_no metrics yet_"
    return head, (j["log"] or "")[-20_000:], metrics


def build_admin(rt: Runtime, session: gr.State):
    admin = guarded(rt, "admin")

    with gr.Tabs():
        # --- world ---------------------------------------------------------------------------
        with gr.Tab("World"):
            world_md = gr.Markdown(elem_id="admin-world")
            manifest = gr.JSON(label="Bundle manifest")
            with gr.Row():
                world_refresh = gr.Button("Refresh", size="sm")
                import_btn = gr.Button("Import bundle prompts and register the baseline",
                                       size="sm")
        # --- prompts -------------------------------------------------------------------------
        with gr.Tab("Prompts"):
            up_file = gr.File(label="Prompt audio (WAV, FLAC or MP3)", file_count="single",
                              file_types=[".wav", ".flac", ".mp3"], elem_id="admin-upload-file")
            with gr.Row():
                up_split = gr.Dropdown(["test", "dev", "train"], value="test", label="Split")
                up_text = gr.Textbox(label="Reference text (optional)")
            up_btn = gr.Button("Upload prompt", variant="primary", elem_id="admin-upload-btn")
            up_result = gr.Markdown(elem_id="admin-upload-result")
        # --- users ---------------------------------------------------------------------------
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
        # --- rating tasks --------------------------------------------------------------------
        with gr.Tab("Rating tasks"):
            tasks_md = gr.Markdown()
            with gr.Row():
                per_prompt = gr.Number(2, label="A/B pairs per prompt and version pair",
                                       precision=0, minimum=1, maximum=20)
                with_mos = gr.Checkbox(False, label="Also single-clip MOS tasks")
            sync_btn = gr.Button("Create rating tasks from samples", size="sm")
            gr.Markdown("Gold task: known answer (A/B: A, B, tie, both_bad in stored order; "
                        "MOS: a range like 4-5). Trap: a clip that tells the rater what to "
                        "answer.")
            with gr.Row():
                qc_a = gr.Number(label="Sample A id", precision=0)
                qc_b = gr.Number(label="Sample B id (empty for MOS)", precision=0)
                qc_ans = gr.Textbox(label="Answer")
                qc_trap = gr.Checkbox(False, label="Trap")
            qc_btn = gr.Button("Add QC task", size="sm")
            gr.Markdown("Trap clips: a spoken instruction (\"This is an attention check. "
                        "Please answer: both bad.\") paired with a real continuation; a rater "
                        "who answers otherwise gets all their votes flagged.")
            with gr.Row():
                trap_n = gr.Number(4, label="Trap tasks to add", precision=0, minimum=1,
                                   maximum=500, elem_id="admin-trap-n")
                trap_btn = gr.Button("Add trap clips", size="sm", elem_id="admin-add-traps")
            tasks_result = gr.Markdown(elem_id="admin-tasks-result")
        # --- jobs ----------------------------------------------------------------------------
        with gr.Tab("Jobs"):
            with gr.Row():
                job_kind = gr.Dropdown(list(JOB_KINDS), value="generate", label="Job")
                job_version = gr.Dropdown([], label="Model version", elem_id="admin-job-version")
                job_split = gr.Dropdown(["", "train", "dev", "test"], value="",
                                        label="Prompt split (empty = all)")
                job_limit = gr.Number(None, label="Max prompts", precision=0)
            job_params = gr.Textbox(label="Extra parameters (JSON, optional)", value="{}")
            job_start = gr.Button("Start job", variant="primary", elem_id="admin-job-start")
            job_started = gr.Markdown()
        # --- DPO round -----------------------------------------------------------------------
        with gr.Tab("DPO round"):
            with gr.Row():
                r_parent = gr.Dropdown([], label="Parent version", elem_id="round-parent")
                r_source = gr.Radio([("AI judge", "ai"), ("Human votes", "human"),
                                     ("Both", "both")], value="ai", label="Pairs from")
                r_rounds = gr.Number(1, label="Rounds", precision=0, minimum=1, maximum=10)
                r_curr = gr.Checkbox(True, label="Curriculum (raise thresholds each round)")
            # the effective values (the mini world's DPO overrides included): what is shown is
            # sent back as an explicit setting, so it must be what the round would use anyway
            opts = rounds.round_options(rt)
            sel, dpo, gen = opts["selection"], opts["dpo"], opts["generation"]
            with gr.Row():
                r_chosen = gr.Number(sel["chosen_min"], label="Chosen if score ≥")
                r_rejected = gr.Number(sel["rejected_max"], label="Rejected if score ≤")
                r_beta = gr.Number(dpo["beta"], label="DPO beta")
                r_rank = gr.Number(dpo["lora_rank"], label="LoRA rank", precision=0)
                r_steps = gr.Number(dpo["max_steps"], label="Steps", precision=0,
                                    elem_id="round-steps")
            with gr.Row():
                r_prompts = gr.Number(gen["max_prompts"] or 0, label="Prompts per round (0 = all)",
                                      precision=0, minimum=0, elem_id="round-prompts")
                r_n = gr.Number(gen["n"], label="Continuations per prompt", precision=0,
                                minimum=2, maximum=20, elem_id="round-n")
            r_start = gr.Button("Start DPO round", variant="primary", elem_id="round-start")
            r_result = gr.Markdown(elem_id="round-result")
            rounds_md = gr.Markdown()
        # --- versions ------------------------------------------------------------------------
        with gr.Tab("Versions"):
            versions_md = gr.Markdown(elem_id="admin-versions")
        # --- exports -------------------------------------------------------------------------
        with gr.Tab("Exports"):
            with gr.Row():
                exp_what = gr.Radio([("Judgments", "judgments"), ("Preference pairs", "pairs")],
                                    value="judgments", label="Export", elem_id="export-what")
                exp_fmt = gr.Radio([("CSV", "csv"), ("JSONL", "jsonl"),
                                    ("HF datasets, zipped (for TRL)", "hf")], value="csv",
                                   label="Format", elem_id="export-format")
                exp_flagged = gr.Checkbox(False, label="Include flagged votes (judgments)")
            exp_btn = gr.Button("Export", size="sm", elem_id="export-btn")
            exp_file = gr.File(label="Download", interactive=False, elem_id="export-file")
            exp_md = gr.Markdown(elem_id="export-result")

    gr.Markdown("### Job monitor")
    with gr.Row():
        watch_id = gr.Number(None, label="Watch job id", precision=0, elem_id="admin-watch-id")
        cancel_btn = gr.Button("Cancel watched job", size="sm", variant="stop")
    job_head = gr.Markdown(elem_id="admin-job-head")
    with gr.Accordion("Live metrics", open=True):
        job_metrics = gr.Markdown(elem_id="admin-job-metrics")
    job_log = gr.Code(label="Log", language=None, lines=8, interactive=False,
                      elem_id="admin-job-log")
    jobs_md = gr.Markdown(elem_id="admin-jobs")

    # --- handlers ----------------------------------------------------------------------------
    def world_status(adapter_problems: list[dict]) -> tuple[str, dict]:
        info = world.bundle_info(rt.settings)
        counts = rating.task_counts(rt)
        n_prompts = prompts.count_prompts(rt)
        built = bool(info.get("complete", "error" not in info))
        lines = [
            f"**World:** {esc(rt.settings.world)} — "
            + ("bundle built" if built else "**the world is not built** "
               "(run `python -m backend bootstrap`)"),
            f"**Prompts:** {n_prompts} · **Versions:** {len(registry.list_versions(rt))} · "
            f"**Rating tasks:** {counts['tasks']} ({counts['qc_tasks']} QC) · "
            f"**A/B votes:** {counts['ab_votes']}",
        ]
        if quality := quality_summary(info):
            lines.append(quality)
        if built or rt.settings.world != "mini":
            problems = health.check_components(rt) + adapter_problems
            if problems:
                lines.append("**Unusable model files:**  \n" + esc(health.describe(problems))
                             .replace("\n", "  \n"))
        return "  \n".join(lines), info

    @admin
    def refresh_all(sess, *, user=None):
        adapter_problems = health.check_adapters(rt)  # hashes each adapter once per refresh
        wmd, info = world_status(adapter_problems)
        vchoices = _versions(rt)
        names = [v for _, v in vchoices]
        base = registry.baseline(rt)
        return (wmd, info, md_table(users.list_users(rt)), md_table(rating.rater_report(rt)),
                _tasks_md(), gr.Dropdown(choices=vchoices, value=names[-1] if names else None),
                gr.Dropdown(choices=vchoices, value=(base or {}).get("name")),
                md_table(rounds.list_rounds(rt, 20),
                         ["id", "status", "pair_source", "round_index", "n_pairs",
                          "parent_version_id", "result_version_id", "job_id", "error"]),
                md_table(_lineage_rows(rt, {p["path"] for p in adapter_problems})),
                _jobs_table(rt))

    def _tasks_md() -> str:
        c = rating.task_counts(rt)
        return (f"**{c['tasks']}** active tasks ({c['qc_tasks']} gold/trap), "
                f"**{c['ab_votes']}** A/B votes.")

    refresh_outputs = [world_md, manifest, users_md, qc_md, tasks_md, job_version, r_parent,
                       rounds_md, versions_md, jobs_md]

    @admin
    def do_import(sess, *, user=None):
        if not rt.settings.bundle_dir.exists():
            raise gr.Error("The world is not built: run `python -m backend bootstrap`.")
        jid = jobs.submit(rt, "import_prompts", {}, user_id=user.id)
        try:
            registry.ensure_baseline(rt)
        except Exception as e:  # noqa: BLE001
            raise gr.Error(f"Registering the baseline failed: {e}") from None
        return jid, f"Import queued as job {jid}."

    @admin
    def do_upload(sess, file, split, text, *, user=None):
        if not file:
            return "**Choose a file first.**"
        path = file if isinstance(file, str) else getattr(file, "name", None)
        try:
            data = prompts.read_upload(rt, path)
            p = prompts.upload_prompt(rt, data, user_id=user.id, split=split or "test",
                                      reference_text=text or None)
        except prompts.PromptError as e:
            return f"**Upload refused:** {esc(e)}"
        except OSError as e:  # disk full, read-only data directory: the service stored nothing
            return (f"**Upload failed, nothing stored:** cannot write the audio "
                    f"({esc(e.strerror or e)}); check the data directory's free space and "
                    "permissions.")
        if p["duplicate"]:
            return f"This audio is already stored as prompt #{p['id']}."
        return (f"Stored prompt **#{p['id']}**: {p['duration_s']:.2f} s, {p['n_units']} units, "
                f"split {esc(p['split'])}.")

    @admin
    def do_add_user(sess, name, password, role, *, user=None):
        try:
            u = users.add_user(rt, (name or "").strip(), password or "", role)
        except users.UserError as e:
            return f"**Refused:** {esc(e)}", gr.Markdown()
        return f"Added **{esc(u.name)}** ({u.role}).", md_table(users.list_users(rt))

    @admin
    def do_set_role(sess, name, role, *, user=None):
        try:
            u = users.set_role(rt, (name or "").strip(), role)
        except users.UserError as e:
            return f"**Refused:** {esc(e)}", gr.Markdown()
        return f"**{esc(u.name)}** is now {u.role}.", md_table(users.list_users(rt))

    def _flagger(flag: bool):
        @admin
        def fn(sess, name, *, user=None):
            try:
                n = rating.set_flagged(rt, (name or "").strip(), flag)
            except rating.RatingError as e:
                return f"**Refused:** {esc(e)}", gr.Markdown()
            word = "Flagged" if flag else "Unflagged"
            return f"{word} {n} vote(s) of {esc(name)}.", md_table(rating.rater_report(rt))

        return fn

    @admin
    def do_sync(sess, per, mos, *, user=None):
        made = rating.sync_tasks(rt, int(per or 2), bool(mos))
        return f"Created {made['ab']} A/B and {made['mos']} MOS task(s).", _tasks_md()

    @admin
    def do_qc(sess, a, b, ans, trap, *, user=None):
        if _whole(a) is None:  # an empty number box arrives as 0
            return "**Give sample A.**", _tasks_md()
        try:
            tid = rating.add_qc_task(rt, _whole(a), _whole(b), ans, bool(trap))
        except rating.RatingError as e:
            return f"**Refused:** {esc(e)}", _tasks_md()
        return f"Added QC task {tid}.", _tasks_md()

    @admin
    def do_traps(sess, n, *, user=None):
        try:
            made = traps.add_traps(rt, int(n or 4))
        except rating.RatingError as e:
            return f"**Refused:** {esc(e)}", _tasks_md()
        return (f"Added {len(made)} trap task(s):\n\n"
                + md_table(made, ["task_id", "trap", "answer", "prompt_id"])), _tasks_md()

    @admin
    def do_job(sess, kind, version, split, limit, extra, *, user=None):
        if kind not in _job_kinds():
            raise gr.Error(f"Job '{kind}' is not available yet.")
        try:
            params = json.loads(extra or "{}")
            if not isinstance(params, dict):
                raise ValueError
        except ValueError:
            raise gr.Error("Extra parameters must be a JSON object.") from None
        if version and kind in ("generate", "judge", "transcribe", "evaluate"):
            params.setdefault("version", version)
        if split and kind in ("generate", "evaluate"):
            params.setdefault("split", split)
        if limit not in (None, "", 0) and kind == "generate":
            params.setdefault("limit", int(limit))
        try:
            jid = jobs.submit(rt, kind, params, user_id=user.id)
        except ValueError as e:
            raise gr.Error(str(e)) from None
        return jid, f"Queued **{esc(kind)}** as job {jid}."

    @admin
    def do_round(sess, parent, source, n, curr, chosen, rejected, beta, rank, steps,
                 max_prompts, per_prompt, *, user=None):
        overrides = {"chosen_min": chosen, "rejected_max": rejected, "beta": beta,
                     "lora_rank": _whole(rank), "max_steps": _whole(steps),
                     "max_prompts": _whole(max_prompts), "n": _whole(per_prompt)}
        try:
            jid = rounds.start_round(rt, parent or None, source, int(n or 1), bool(curr),
                                     overrides, user_id=user.id)
        except Exception as e:  # noqa: BLE001 - validation errors are shown as they are
            raise gr.Error(f"Cannot start the round: {e}") from None
        return jid, f"DPO round queued as job **{jid}**; watching it below."

    @admin
    def do_cancel(sess, jid, *, user=None):
        if jid in (None, ""):
            raise gr.Error("Choose a job id.")
        try:
            st = jobs.cancel(rt, int(jid))
        except ValueError as e:
            raise gr.Error(str(e)) from None
        return f"Cancel requested (job is {st})."

    @admin
    def do_export(sess, what, fmt, flagged, *, user=None):
        try:
            path = exports.export_file(rt, what, fmt, bool(flagged))
        except Exception as e:  # noqa: BLE001 - e.g. no pairs yet: say so
            raise gr.Error(f"Export failed: {e}") from None
        return str(path), f"Exported {esc(what)} ({esc(fmt)}) to `{esc(path)}`."

    def tick(sess, jid):
        """Timer: refresh the monitor for admins; nothing (and no data) for anyone else."""
        from app.auth import current

        u = current(rt, sess)
        if u is None or not u.is_admin:
            return gr.Markdown(), gr.Code(), gr.Markdown(), gr.Markdown()
        head, log, metrics = _job_detail(rt, jid)
        return head, log, metrics, _jobs_table(rt)

    @admin
    def watch(sess, jid, *, user=None):
        head, log, metrics = _job_detail(rt, jid)
        return head, log, metrics

    world_refresh.click(refresh_all, [session], refresh_outputs, **PRIVATE)
    import_btn.click(do_import, [session], [watch_id, world_md], **PRIVATE)
    up_btn.click(do_upload, [session, up_file, up_split, up_text], [up_result],
                 api_name="admin_upload_prompt", api_visibility="undocumented")
    nu_btn.click(do_add_user, [session, nu_name, nu_pass, nu_role], [users_result, users_md],
                 api_name="admin_add_user", api_visibility="undocumented")
    role_btn.click(do_set_role, [session, nu_name, nu_role], [users_result, users_md],
                   **PRIVATE)
    flag_btn.click(_flagger(True), [session, nu_name], [users_result, qc_md], **PRIVATE)
    unflag_btn.click(_flagger(False), [session, nu_name], [users_result, qc_md], **PRIVATE)
    sync_btn.click(do_sync, [session, per_prompt, with_mos], [tasks_result, tasks_md],
                   **PRIVATE)
    qc_btn.click(do_qc, [session, qc_a, qc_b, qc_ans, qc_trap], [tasks_result, tasks_md],
                 **PRIVATE)
    trap_btn.click(do_traps, [session, trap_n], [tasks_result, tasks_md], **PRIVATE)
    job_start.click(do_job, [session, job_kind, job_version, job_split, job_limit, job_params],
                    [watch_id, job_started], api_name="admin_start_job",
                    api_visibility="undocumented")
    r_start.click(do_round, [session, r_parent, r_source, r_rounds, r_curr, r_chosen,
                             r_rejected, r_beta, r_rank, r_steps, r_prompts, r_n],
                  [watch_id, r_result],
                  **PRIVATE)
    cancel_btn.click(do_cancel, [session, watch_id], [job_head], **PRIVATE)
    exp_btn.click(do_export, [session, exp_what, exp_fmt, exp_flagged], [exp_file, exp_md],
                  **PRIVATE)
    watch_id.change(watch, [session, watch_id], [job_head, job_log, job_metrics], **PRIVATE)

    timer = gr.Timer(rt.settings.server.poll_seconds, active=False)
    timer.tick(tick, [session, watch_id], [job_head, job_log, job_metrics, jobs_md],
               **PRIVATE, show_progress="hidden")
    return refresh_all, refresh_outputs, timer

