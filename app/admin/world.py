"""Admin > World: whether the world's bundle is built, what the store holds, the bundle's quality
figures and unusable model files; queue the import of the bundle's prompts."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from app.common import esc, html_table, plain
from backend import health, jobs, prompts, rating, registry, world
from backend.progress import format_duration
from backend.runtime import Runtime
from backend.users import UserInfo


def build_progress(status: dict | None) -> str:
    """A running build's stage and ETAs in one line ("" when no build is running): what the
    page says while the app waits for its world (backend.world.build_status)."""
    if not status:
        return ""
    stage_eta = status.get("stage_eta_s")
    stage = (f"stage **{esc(status.get('stage') or '?')}** "
             f"{100 * status.get('stage_fraction', 0):.0f} %"
             + (f", about {format_duration(stage_eta)} left in it" if stage_eta is not None
                else ""))
    return (f"**Building the mini world** ({esc(status.get('preset', '?'))} preset, seed "
            f"{esc(status.get('seed', '?'))}): {stage} · the whole build "
            f"{100 * status.get('fraction', 0):.0f} % done, about "
            f"{format_duration(status.get('eta_s', 0))} left")


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


def world_summary(rt: Runtime, adapter_problems: list[dict]) -> tuple[str, dict]:
    """The World text and the bundle manifest. `adapter_problems` comes from the caller, which
    hashes the adapters once per refresh for this and the Versions table."""
    info = world.bundle_info(rt.settings)
    counts = rating.task_counts(rt)
    n_prompts = prompts.count_prompts(rt)
    built = bool(info.get("complete", "error" not in info))
    lines = [
        f"**World:** {esc(rt.settings.world)} — "
        + ("bundle built" if built else
           build_progress(world.build_status(rt.settings.bundle_dir))
           or "**the world is not built** (run `python -m backend bootstrap`)"),
        f"**Prompts:** {n_prompts} · **Versions:** {len(registry.list_versions(rt))} · "
        f"**Rating tasks:** {counts['tasks']} ({counts['qc_tasks']} QC) · "
        f"**A/B votes:** {counts['ab_votes']}",
    ]
    if quality := quality_summary(info):
        lines.append(quality)
    # an unbuilt mini world has no model files to check yet: saying so above is enough
    if built or rt.settings.world != "mini":
        problems = health.check_components(rt) + adapter_problems
        if problems:
            lines.append("**Unusable model files:**  \n" + esc(health.describe(problems))
                         .replace("\n", "  \n"))
    return "  \n".join(lines), manifest_html(info)


def _flat(prefix: str, value, out: list[list[str]]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flat(f"{prefix} › {k}" if prefix else str(k), v, out)
    else:
        out.append([prefix, plain(value)])


def manifest_html(info: dict) -> str:
    """The bundle manifest as a table of (where › what, value), for operators."""
    rows: list[list[str]] = []
    _flat("", info, rows)
    return html_table(["Entry", "Value"], rows[:400])


def import_bundle(rt: Runtime, user: UserInfo) -> tuple[int, str]:
    """Queue the import of the bundle's prompts and register the baseline: (job id, message)."""
    if not rt.settings.bundle_dir.exists():
        raise gr.Error("The world is not built: run `python -m backend bootstrap`.")
    jid = jobs.submit(rt, "import_prompts", {}, user_id=user.id)
    try:
        registry.ensure_baseline(rt)
    except Exception as e:  # noqa: BLE001
        raise gr.Error(f"Registering the baseline failed: {e}") from None
    return jid, f"Import queued as job {jid}."


def build_world() -> SimpleNamespace:
    """The World tab's components. Its two buttons feed other tabs and the job monitor, so
    `build_admin` wires them once those exist."""
    with gr.Tab("World"):
        md = gr.Markdown(elem_id="admin-world")
        with gr.Accordion("Bundle manifest", open=False):
            manifest = gr.HTML(elem_id="admin-manifest")
        with gr.Row():
            refresh = gr.Button("Refresh", size="sm")
            import_btn = gr.Button("Import bundle prompts and register the baseline",
                                   size="sm")
    return SimpleNamespace(md=md, manifest=manifest, refresh=refresh, import_btn=import_btn)
