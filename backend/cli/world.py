"""`bootstrap`: build or describe the embedded mini world."""

from __future__ import annotations

import json
import time

from backend.cli.common import choices_of


def cmd_bootstrap(args) -> None:
    from backend.config import load_settings
    from backend.world import build_bundle, bundle_info, read_manifest

    settings = load_settings()
    if args.info:
        print(json.dumps(bundle_info(settings), indent=2))
        return
    from tqdm import tqdm

    bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}]")

    def progress(frac: float, msg: str) -> None:
        bar.n = round(100 * frac, 1)
        bar.set_description(msg[:40])
        bar.refresh()

    t0 = time.monotonic()
    path = build_bundle(settings, args.preset, args.seed, progress=progress, force=args.force)
    bar.close()
    m = read_manifest(path) or {}
    print(f"bundle at {path} (preset {m.get('preset')}, seed {m.get('seed')}, "
          f"{time.monotonic() - t0:.0f} s this run; built in "
          f"{m.get('build_seconds', {}).get('total')} s)")
    print(json.dumps(m.get("bars", {}), indent=2))


def add_commands(sub) -> None:
    from backend.config import BootstrapConfig

    p = sub.add_parser("bootstrap", help="build the embedded mini world (offline, CPU)")
    p.add_argument("--preset", choices=choices_of(BootstrapConfig, "preset"), default=None,
                   help="full (the product; build times in docs/results.md) or tiny (tests)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--force", action="store_true", help="rebuild even if a bundle exists")
    p.add_argument("--info", action="store_true", help="print the bundle's manifest")
    p.set_defaults(func=cmd_bootstrap)
