"""What a built world depends on besides its code and seed, and what differs between two worlds.

The same code and seed can give different units on two machines: BLAS kernels (chosen at run
time by CPU), SIMD builds (faiss loads an AVX2 or AVX-512 variant), thread counts (a reduction
split two ways rounds differently) and library versions all change float results. The manifest
records them (`environment()`, per-stage `thread_counts()`), and `diff_manifests` lists what
differs between two manifests that could explain different digests, next to which digests differ.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
            "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY",
            "FAISS_OPT_LEVEL")
"""Environment variables that change thread counts or the kernels numpy, torch and faiss pick."""


def cpu_info(path: Path = Path("/proc/cpuinfo")) -> dict:
    """CPU model and flags from /proc/cpuinfo (first processor), and the CPUs this process may
    use."""
    first: dict[str, str] = {}
    try:
        for line in path.read_text().splitlines():
            if not line.strip():
                if first:
                    break
                continue
            k, _, v = line.partition(":")
            first[k.strip()] = v.strip()
    except OSError:
        pass
    return {
        "model": first.get("model name") or platform.processor() or platform.machine(),
        "vendor": first.get("vendor_id"),
        "family_model_stepping": [first.get(k) for k in ("cpu family", "model", "stepping")],
        "flags": " ".join(sorted(first.get("flags", "").split())),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }


def thread_counts() -> dict:
    """Threads torch and every loaded BLAS/OpenMP library would use now (threadpoolctl)."""
    import torch
    from threadpoolctl import threadpool_info

    out = {"torch": torch.get_num_threads(), "torch_interop": torch.get_num_interop_threads()}
    for lib in threadpool_info():
        out[f"{lib['internal_api']}:{lib['prefix']}"] = lib["num_threads"]
    return out


def environment() -> dict:
    """The machine and numeric libraries a world was built with (call after the build: only
    libraries loaded by then are listed)."""
    import numpy as np
    import torch
    from threadpoolctl import threadpool_info

    numpy_deps = np.show_config(mode="dicts").get("Build Dependencies", {})
    env = {
        "cpu": cpu_info(),
        "platform": platform.platform(),
        "env": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
        "numpy_blas": {k: {f: v.get(f) for f in ("name", "version", "openblas configuration")}
                       for k, v in numpy_deps.items() if k in ("blas", "lapack")},
        "loaded_blas_openmp": {  # keyed by library, so two manifests compare per library
            f"{lib['internal_api']}:{lib['prefix']}": {
                k: lib.get(k) for k in ("version", "architecture", "threading_layer")}
            for lib in sorted(threadpool_info(), key=lambda x: x["filepath"])},
        "torch": {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
                  "mkl": torch.backends.mkl.is_available(),
                  "mkldnn": torch.backends.mkldnn.is_available(),
                  "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
                  "config": torch.__config__.show().strip().splitlines()},
    }
    faiss = sys.modules.get("faiss")  # only when the build used it (its SIMD build matters)
    env["faiss"] = {"compile_options": faiss.get_compile_options()} if faiss else None
    return env


CAUSES = ("code_hash", "preset", "seed", "versions", "environment", "stages.*.threads")
"""Manifest parts that can make two builds of one world differ."""
EFFECTS = ("digests", "stages.*.outputs", "components.tokenizer.units_digest")
"""Manifest parts that say whether (and from which stage on) two worlds differ."""


def _flatten(obj, prefix: str = "") -> dict[str, object]:
    if isinstance(obj, dict):
        out: dict[str, object] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def _select(m: dict, pattern: str) -> dict[str, object]:
    head, _, rest = pattern.partition(".*.")
    if not rest:
        node = m
        for part in pattern.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return _flatten(node, pattern) if node is not None else {}
    out = {}
    for name, sub in (m.get(head) or {}).items():
        if isinstance(sub, dict) and rest in sub:
            out.update(_flatten(sub[rest], f"{head}.{name}.{rest}"))
    return out


def diff_manifests(a: dict, b: dict) -> dict[str, list[dict]]:
    """{"causes": [...], "effects": [...]}: each entry {"key", "a", "b"} for a value that differs
    (or is missing on one side). Causes are what the builds depended on (code, seed, versions,
    CPU, BLAS, threads); effects are the digests, in build order, so the first differing stage
    output says where two worlds part."""
    def diff(patterns) -> list[dict]:
        rows = []
        for pattern in patterns:
            va, vb = _select(a, pattern), _select(b, pattern)
            for k in sorted(set(va) | set(vb), key=lambda k: (k not in va, k)):
                if va.get(k) != vb.get(k):
                    rows.append({"key": k, "a": va.get(k), "b": vb.get(k)})
        return rows

    return {"causes": diff(CAUSES), "effects": diff(EFFECTS)}


def load_manifest(path: Path) -> dict:
    """A manifest from a bundle directory or a manifest.json file."""
    path = Path(path)
    f = path / "manifest.json" if path.is_dir() else path
    if not f.exists():
        raise FileNotFoundError(f"no manifest at {f}")
    try:
        return json.loads(f.read_text())
    except ValueError as e:
        raise ValueError(f"{f} is not a JSON manifest: {e}") from None


def describe_diff(d: dict[str, list[dict]]) -> str:
    """The diff as text lines for the CLI (values shortened to one line)."""
    def short(v) -> str:
        s = json.dumps(v) if not isinstance(v, str) else v
        return s if len(s) <= 70 else s[:67] + "..."

    lines = []
    for part, title in (("effects", "differing digests (the world differs)"),
                        ("causes", "differing inputs (what could explain it)")):
        lines.append(f"{title}: {len(d[part]) or 'none'}")
        lines += [f"  {r['key']}: {short(r['a'])}  |  {short(r['b'])}" for r in d[part]]
    return "\n".join(lines)
