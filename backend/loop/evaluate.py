"""Step 6 of the loop: evaluate a model version: spoken-LM benchmarks and the judge score of
its samples.

Benchmarks (ZeroSpeech 2021 style layout, produced by the mini world's bootstrap and, for the
published sets, by `backend.benchmarks` / `python -m backend convert-benchmark`):

    <root>/<name>/<split>.item        header with at least `filename id correct`
    <root>/<name>/<split>/<filename>.wav

Two rows per id; `correct=1` marks the real / grammatical / coherent / on-topic item. Accuracy is
the share of ids whose correct item gets the higher *summed* log-likelihood under the unit LM
(TWIST / Align-SLM); ties count half. The length-normalized variant (mean log-likelihood per
scored token) is reported separately as metric `accuracy_norm`. Intervals: Wilson.

Units of each wav are cached in `<data_dir>/cache/units/` keyed by the file's sha256 and the
tokenizer's identity (path + modification time), so re-evaluating a version only re-scores.

Judge score: the mean of the stored AI judgments (not failed, not flagged) of the version's samples
on prompts of the split, per judge, with a 95 % interval from resampling prompts (a prompt's
samples are correlated); the Student-t interval over judgments is kept in `details`.

Every result row stores its per-item outcomes in `details` (`ids`, `outcomes`), so two versions
can be compared on the same items with a paired bootstrap (`compare_versions`, CLI `report`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from backend import queries, registry, stats
from backend.files import atomic_write_text, read_wav, save_figure, sha256_bytes, sha256_file
from backend.jobs import JobContext, JobError, handler
from backend.progress import Progress, noop, span
from backend.registry import Version
from backend.runtime import Runtime
from db.schema import EvalResult, ModelVersion

log = logging.getLogger(__name__)

BENCHMARKS = ("swuggy", "sblimp", "ssc", "tsc")
SCORE_BATCH = 64
ENCODE_BATCH = 32


class EvaluationError(ValueError):
    pass


# --- benchmark files ----------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchPair:
    id: str
    good: str
    """filename (no extension) of the correct item"""
    bad: str


def read_item_file(path: str | Path) -> list[BenchPair]:
    """Pairs of a `.item` file, in file order of their ids."""
    path = Path(path)
    try:
        lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise EvaluationError(f"cannot read {path}: {e.strerror or e}") from e
    if not lines:
        raise EvaluationError(f"{path} is empty")
    header = lines[0]
    missing = {"filename", "id", "correct"} - set(header)
    if missing:
        raise EvaluationError(f"{path}: header lacks {sorted(missing)} (has {header})")
    col = {h: i for i, h in enumerate(header)}
    groups: dict[str, list[tuple[str, int]]] = {}
    for no, row in enumerate(lines[1:], start=2):
        if len(row) != len(header):
            raise EvaluationError(f"{path}:{no}: {len(row)} fields, header has {len(header)}")
        try:
            correct = int(float(row[col["correct"]]))
        except ValueError as e:
            raise EvaluationError(f"{path}:{no}: correct must be 0 or 1") from e
        groups.setdefault(row[col["id"]], []).append((row[col["filename"]], correct))
    pairs = []
    for id_, rows in groups.items():
        good = [f for f, c in rows if c == 1]
        bad = [f for f, c in rows if c == 0]
        if len(rows) != 2 or len(good) != 1 or len(bad) != 1:
            raise EvaluationError(
                f"{path}: id {id_} needs exactly one correct=1 and one correct=0 row, "
                f"got {[c for _, c in rows]}")
        pairs.append(BenchPair(id_, good[0], bad[0]))
    if not pairs:
        raise EvaluationError(f"{path} has no items")
    return pairs


def benchmark_roots(rt: Runtime) -> list[Path]:
    """Where benchmark directories are looked up, first match wins: `STUDIO_BENCHMARKS_DIR`,
    `<data_dir>/benchmarks` (converted real sets), `<bundle>/benchmarks` (mini world)."""
    roots = []
    if os.environ.get("STUDIO_BENCHMARKS_DIR"):
        roots.append(Path(os.environ["STUDIO_BENCHMARKS_DIR"]))
    roots += [rt.settings.data_dir / "benchmarks", rt.settings.bundle_dir / "benchmarks"]
    return roots


def find_benchmark(rt: Runtime, name: str, split: str, root: Path | None = None) -> Path | None:
    """The directory `<root>/<name>` holding `<split>.item`, or None."""
    for r in [Path(root)] if root else benchmark_roots(rt):
        if (r / name / f"{split}.item").is_file():
            return r / name
    return None


def available_benchmarks(rt: Runtime, split: str = "dev", root: Path | None = None) -> list[str]:
    return [b for b in BENCHMARKS if find_benchmark(rt, b, split, root)]


# --- units ------------------------------------------------------------------------------------
def _tokenizer_id(rt: Runtime) -> str:
    cfg = rt.settings.models.tokenizer
    path = getattr(cfg, "path", "") or ""
    try:
        stamp = str(Path(path).stat().st_mtime_ns) if path else ""
    except OSError:
        stamp = ""
    return f"{getattr(cfg, 'kind', '')}|{Path(path).resolve() if path else ''}|{stamp}"


def read_wave(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and rate of a benchmark wav, as every scorer of it reads it."""
    try:
        return read_wav(path)
    except Exception as e:  # noqa: BLE001 - soundfile raises several types
        raise EvaluationError(f"cannot read audio {path}: {e}") from e


def units_for_files(rt: Runtime, paths: Sequence[Path], progress: Progress | None = None
                    ) -> list[list[int]]:
    """Deduplicated units of each wav, through `rt.tokenizer`, cached on disk."""
    cache = rt.settings.data_dir / "cache" / "units"
    tok_key = sha256_bytes(_tokenizer_id(rt).encode())[:16]
    out: list[list[int] | None] = [None] * len(paths)
    todo: list[tuple[int, Path]] = []
    for i, p in enumerate(paths):
        if not p.is_file():
            raise EvaluationError(f"benchmark audio missing: {p}")
        key = f"{sha256_file(p)}-{tok_key}"
        f = cache / key[:2] / f"{key}.json"
        if f.is_file():
            try:
                out[i] = json.loads(f.read_text())
                continue
            except ValueError:
                pass  # a damaged cache entry is recomputed
        todo.append((i, f))
    tokenizer = rt.tokenizer if todo else None
    for start in range(0, len(todo), ENCODE_BATCH):
        chunk = todo[start:start + ENCODE_BATCH]
        waves = [read_wave(paths[i]) for i, _ in chunk]
        batch = getattr(tokenizer, "encode_batch", None)
        srs = {sr for _, sr in waves}
        if batch is not None and len(srs) == 1:
            units = batch([w for w, _ in waves], srs.pop())
        else:
            units = [tokenizer.encode(w, sr) for w, sr in waves]
        for (i, f), u in zip(chunk, units, strict=True):
            u = [int(x) for x in u]
            out[i] = u
            atomic_write_text(f, json.dumps(u))
        if progress:
            progress(min(1.0, (start + len(chunk)) / len(todo)), "tokenizing")
    return [u if u is not None else [] for u in out]


# --- adapters and scoring -------------------------------------------------------------------
def score_sequences(rt: Runtime, seqs: Sequence[list[int]], adapter: str | None,
                    progress: Progress | None = None, batch_size: int = SCORE_BATCH,
                    lm=None) -> tuple[np.ndarray, np.ndarray]:
    """(summed log-likelihood, mean per scored token) of each sequence under the unit LM `lm`
    (default: the configured one; `rt.lm(version)` for a version) with `adapter`."""
    total = np.zeros(len(seqs))
    mean = np.zeros(len(seqs))
    lm = lm or rt.unit_lm
    for start in range(0, len(seqs), batch_size):
        chunk = list(seqs[start:start + batch_size])
        lps = lm.logprob(chunk, adapter=adapter)
        for k, lp in enumerate(lps):
            total[start + k] = lp.total
            mean[start + k] = lp.total / max(1, len(lp.per_token))
        if progress:
            progress(min(1.0, (start + len(chunk)) / max(1, len(seqs))), "scoring")
    return total, mean


def pair_outcomes(good: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """1 where the correct item scores higher, 0.5 on an exact tie, else 0."""
    good, bad = np.asarray(good, float), np.asarray(bad, float)
    return np.where(good > bad, 1.0, np.where(good == bad, 0.5, 0.0))


def _result(benchmark: str, metric: str, values: np.ndarray, ids: list[str], split: str,
            est: stats.Estimate, **extra: Any) -> dict:
    return {
        "benchmark": benchmark, "metric": metric, "value": est.value, "n": est.n,
        "ci_low": est.low, "ci_high": est.high,
        "details": {"split": split, "ids": ids, "outcomes": [float(v) for v in values], **extra},
    }


def evaluate_benchmark(rt: Runtime, name: str, split: str, adapter: str | None,
                       root: Path | None = None, progress: Progress | None = None,
                       lm=None) -> list[dict]:
    """Accuracy and length-normalized accuracy of one benchmark split (result dicts)."""
    bdir = find_benchmark(rt, name, split, root)
    if bdir is None:
        raise EvaluationError(f"benchmark {name}/{split}.item not found under "
                              f"{[str(r) for r in ([root] if root else benchmark_roots(rt))]}")
    pairs = read_item_file(bdir / f"{split}.item")
    files = [bdir / split / f"{f}.wav" for p in pairs for f in (p.good, p.bad)]
    units = units_for_files(rt, files, span(progress, 0.0, 0.4))
    total, mean = score_sequences(rt, units, adapter, span(progress, 0.4, 1.0), lm=lm)
    ids = [p.id for p in pairs]
    out = []
    for metric, arr in (("accuracy", total), ("accuracy_norm", mean)):
        good, bad = arr[0::2], arr[1::2]
        o = pair_outcomes(good, bad)
        est = stats.wilson(float(o.sum()), len(o))
        out.append(_result(name, metric, o, ids, split, est,
                           margins=[round(float(x), 5) for x in good - bad],
                           ties=int((o == 0.5).sum()), root=str(bdir.parent)))
    return out


# --- judge score ------------------------------------------------------------------------------
def judge_scores(rt: Runtime, version_id: int, split: str | None = None
                 ) -> dict[str, list[tuple[int, int, float]]]:
    """Per judge identity (`name@prompt_version`): (prompt id, sample id, value) of the counted
    AI judgments (backend.queries) of the version's samples, on prompts of `split` if given."""
    out: dict[str, list] = {}
    with rt.store.read() as s:
        for a in queries.ai_scores(s, version_id=version_id, split=split or None):
            out.setdefault(a.judge, []).append((a.prompt_id, a.sample_id, a.value))
    return out


def evaluate_judge(rt: Runtime, version_id: int, split: str | None) -> list[dict]:
    out = []
    for judge, rows in sorted(judge_scores(rt, version_id, split).items()):
        pids = np.array([r[0] for r in rows])
        vals = np.array([r[2] for r in rows])
        boot = stats.cluster_bootstrap_mean(vals, pids, resamples=2000)
        t = stats.mean_t(vals)
        per_prompt = {}
        for pid, v in zip(pids, vals, strict=True):
            per_prompt.setdefault(str(pid), []).append(v)
        ids = sorted(per_prompt, key=int)
        item_means = np.array([np.mean(per_prompt[i]) for i in ids])
        out.append(_result(
            f"judge:{judge}", "mean_score", item_means, ids, split or "", boot,
            judge=judge, ci_t=[t.low, t.high], n_prompts=len(ids),
            histogram={str(k): int((np.round(vals) == k).sum()) for k in range(1, 6)},
            scores=[round(float(v), 4) for v in vals],
        ))
    return out


# --- store and report -------------------------------------------------------------------------
def _resolve_version(rt: Runtime, version: int | str | Version) -> Version:
    if isinstance(version, Version):
        return version
    return registry.get_version(rt, version)


def store_results(rt: Runtime, version_id: int, results: list[dict], job_id: int | None = None
                  ) -> None:
    with rt.store.session() as s:
        for r in results:
            s.add(EvalResult(
                model_version_id=version_id, benchmark=r["benchmark"], metric=r["metric"],
                value=float(r["value"]) if not math.isnan(r["value"]) else 0.0, n=int(r["n"]),
                ci_low=r["ci_low"], ci_high=r["ci_high"], details=r["details"], job_id=job_id,
            ))


def _summary(r: dict) -> dict:
    return {k: r[k] for k in ("benchmark", "metric", "value", "n", "ci_low", "ci_high")}


def fmt_ci(lo, hi, pct: bool) -> str:
    if lo is None or hi is None:
        return "-"
    return f"[{100 * lo:.1f}, {100 * hi:.1f}]" if pct else f"[{lo:.3f}, {hi:.3f}]"


def write_report(rt: Runtime, version: Version, results: list[dict], split: str) -> Path:
    """`<data_dir>/reports/<version>/report.md` plus PNGs (accuracy bars, judge histograms)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = rt.settings.data_dir / "reports" / version.name
    d.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Evaluation of `{version.name}`", "",
        f"kind {version.kind}, round {version.round_index}, split `{split}`, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}", "",
        "| benchmark | metric | value | 95% CI | n |", "| --- | --- | --- | --- | --- |",
    ]
    for r in results:
        pct = r["metric"].startswith("accuracy")
        val = f"{100 * r['value']:.1f}%" if pct else f"{r['value']:.3f}"
        lines.append(f"| {r['benchmark']} | {r['metric']} | {val} | "
                     f"{fmt_ci(r['ci_low'], r['ci_high'], pct)} | {r['n']} |")
    lines += ["", "Accuracy: share of pairs where the correct item has the higher summed "
              "log-likelihood (ties half), Wilson 95% CI; `accuracy_norm` uses the mean per "
              "token. Judge score: mean of valid AI judgments, 95% CI by resampling prompts.", ""]
    acc = [r for r in results if r["metric"] == "accuracy"]
    if acc:
        fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(acc), 3.2))
        x = np.arange(len(acc))
        vals = np.array([r["value"] for r in acc])
        lo = np.array([r["ci_low"] if r["ci_low"] is not None else r["value"] for r in acc])
        hi = np.array([r["ci_high"] if r["ci_high"] is not None else r["value"] for r in acc])
        ax.bar(x, vals, color="#4c72b0")
        ax.errorbar(x, vals, yerr=[vals - lo, hi - vals], fmt="none", ecolor="black", capsize=4)
        ax.axhline(0.5, color="grey", ls="--", lw=1)
        ax.set_xticks(x, [r["benchmark"] for r in acc])
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
        ax.set_title(f"{version.name} ({split})", fontsize=9)
        fig.tight_layout()
        save_figure(fig, d / "accuracy.png", dpi=110)
        lines.append("![accuracy](accuracy.png)")
    for r in results:
        if r["metric"] != "mean_score":
            continue
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.hist(r["details"]["scores"], bins=np.arange(0.5, 6.0, 0.5), color="#55a868",
                edgecolor="white")
        ax.axvline(r["value"], color="black", lw=1.5, label=f"mean {r['value']:.2f}")
        ax.set_xlabel("judge score")
        ax.set_ylabel("judgments")
        ax.set_title(r["benchmark"], fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fname = f"{_safe(r['benchmark'])}.png"
        save_figure(fig, d / fname, dpi=110)
        lines.append(f"![{r['benchmark']}]({fname})")
    path = d / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def evaluate_version(
    rt: Runtime, version: int | str | Version, benchmarks: Sequence[str] | None = None,
    split: str = "dev", progress: Progress | None = None, *, root: Path | None = None,
    job_id: int | None = None, judge: bool = True,
) -> list[dict]:
    """Evaluate a version on the benchmarks (None: every one found for `split`; an empty list:
    none, the judge score only) and its judge score; stores eval_results rows, writes the
    report; returns the rows (without details)."""
    v = _resolve_version(rt, version)
    progress = progress or noop
    names = list(benchmarks) if benchmarks is not None else available_benchmarks(rt, split, root)
    unknown = [b for b in names if not find_benchmark(rt, b, split, root)]
    if unknown:
        raise EvaluationError(f"benchmark(s) {unknown} not found for split {split!r}")
    results: list[dict] = []
    lm, adapter = (rt.lm(v), rt.adapter(v)) if names else (None, None)
    steps = len(names) + (1 if judge else 0)
    for k, name in enumerate(names):
        progress(k / max(1, steps), f"{name}: start")
        def sub(f, m, k=k, name=name):
            progress((k + f) / max(1, steps), f"{name}: {m}")

        results += evaluate_benchmark(rt, name, split, adapter, root, sub, lm=lm)
    if judge:
        progress(len(names) / max(1, steps), "judge score")
        results += evaluate_judge(rt, v.id, split)
    store_results(rt, v.id, results, job_id)
    write_report(rt, v, results, split)
    progress(1.0, "done")
    return [_summary(r) for r in results]


# --- comparison across rounds ----------------------------------------------------------------
def latest_results(rt: Runtime, split: str | None = None) -> dict[tuple[int, str, str], dict]:
    """The newest eval_results row per (version id, benchmark, metric) for `split`."""
    out: dict[tuple[int, str, str], dict] = {}
    with rt.store.read() as s:
        for r in s.scalars(select(EvalResult).order_by(EvalResult.id)):
            d = r.details or {}
            if split is not None and d.get("split", split) != split:
                continue
            out[(r.model_version_id, r.benchmark, r.metric)] = {
                "value": r.value, "n": r.n, "ci_low": r.ci_low, "ci_high": r.ci_high,
                "details": d, "created_at": r.created_at, "job_id": r.job_id,
            }
    return out


def compare_versions(rt: Runtime, split: str = "dev", resamples: int = 2000) -> list[dict]:
    """Baseline vs every aligned version on every metric both have: difference (aligned minus
    baseline) on the items both were evaluated on, with a paired-bootstrap 95% CI."""
    base = registry.baseline(rt)
    if base is None:
        raise EvaluationError("no baseline version registered")
    with rt.store.read() as s:
        aligned = [registry.Version.of(v) for v in s.scalars(
            select(ModelVersion).where(ModelVersion.kind == "aligned")
            .order_by(ModelVersion.round_index, ModelVersion.id))]
    latest = latest_results(rt, split)
    rows = []
    for v in aligned:
        for (vid, bench, metric), r in sorted(latest.items(), key=lambda kv: kv[0][1:]):
            if vid != v.id or (base.id, bench, metric) not in latest:
                continue
            b = latest[(base.id, bench, metric)]
            bi = dict(zip(b["details"].get("ids", []), b["details"].get("outcomes", []),
                          strict=False))
            ai = dict(zip(r["details"].get("ids", []), r["details"].get("outcomes", []),
                          strict=False))
            common = [i for i in bi if i in ai]
            diff = stats.paired_bootstrap_diff([bi[i] for i in common], [ai[i] for i in common],
                                               resamples=resamples)
            rows.append({
                "version": v.name, "round": v.round_index, "benchmark": bench,
                "metric": metric, "baseline": b["value"], "aligned": r["value"],
                "diff": diff.value, "ci_low": diff.low, "ci_high": diff.high,
                "n_paired": diff.n,
                "significant": diff.low is not None and (diff.low > 0 or diff.high < 0),
            })
    return rows


def write_comparison(rt: Runtime, rows: list[dict], out: Path | None = None,
                     split: str = "dev") -> Path:
    out = Path(out) if out else rt.settings.data_dir / "reports" / "comparison"
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Baseline vs aligned versions (split `{split}`)", "",
             "Difference = aligned - baseline on the same items; 95% CI by paired bootstrap.", "",
             "| version | round | benchmark | metric | baseline | aligned | diff | 95% CI | n |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        mark = " *" if r["significant"] else ""
        lines.append(
            f"| {r['version']} | {r['round']} | {r['benchmark']} | {r['metric']} | "
            f"{r['baseline']:.4f} | {r['aligned']:.4f} | {r['diff']:+.4f}{mark} | "
            f"{fmt_ci(r['ci_low'], r['ci_high'], False)} | {r['n_paired']} |")
    if not rows:
        lines.append("| (no paired results: evaluate the baseline and an aligned version) |"
                     + " |" * 8)
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    buf = io.StringIO()
    fields = ["version", "round", "benchmark", "metric", "baseline", "aligned", "diff", "ci_low",
              "ci_high", "n_paired", "significant"]
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "comparison.csv", buf.getvalue())
    return out / "report.md"


# --- job -----------------------------------------------------------------------------
def bench_list(value) -> list[str] | None:
    if not value:
        return None
    if isinstance(value, str):
        value = value.split(",")
    return [b.strip() for b in value if b and b.strip()]


@handler("evaluate")
def evaluate_job(ctx: JobContext) -> dict:
    p = ctx.params
    if not p.get("version"):
        raise JobError("evaluate: parameter 'version' is required")
    split = p.get("split") or "dev"
    res = evaluate_version(ctx.runtime, p["version"], benchmarks=bench_list(p.get("benchmarks")),
                           split=split, progress=ctx.progress, job_id=ctx.job_id)
    for r in res:
        ctx.log(f"{r['benchmark']} {r['metric']} = {r['value']:.4f} (n={r['n']})")
    return {"version": str(p["version"]), "split": split, "results": res}
