"""`bootstrap`: build or describe the embedded mini world."""

from __future__ import annotations

import json
import sys
import time

from backend.cli.common import choices_of


def cmd_bootstrap(args) -> None:
    from backend.config import load_settings
    from backend.world import DONE, REUSED, STARTED, build_bundle, bundle_info, read_manifest

    settings = load_settings()
    if args.info:
        print(json.dumps(bundle_info(settings), indent=2))
        return
    from tqdm import tqdm

    # The ETA is the build's own (measured stage durations, the current stage's rate), in the
    # message; tqdm's linear extrapolation over stages of different speeds would mislead.
    bar = tqdm(total=100, unit="%", bar_format="{percentage:3.0f}%|{bar:20}| {desc}")

    def progress(frac: float, msg: str) -> None:
        bar.n = round(100 * frac, 1)
        bar.set_description_str(msg[:110], refresh=False)
        if msg.endswith((STARTED, REUSED)) or f": {DONE} " in msg:
            bar.write(msg)  # a line per stage event on stdout, above the bar
            sys.stdout.flush()
        bar.refresh()

    t0 = time.monotonic()
    path = build_bundle(settings, args.preset, args.seed, progress=progress, force=args.force)
    bar.close()
    m = read_manifest(path) or {}
    print(f"bundle at {path} (preset {m.get('preset')}, seed {m.get('seed')}, "
          f"{time.monotonic() - t0:.0f} s this run; built in "
          f"{m.get('build_seconds', {}).get('total')} s)")
    print(json.dumps(m.get("bars", {}), indent=2))


def cmd_world_diff(args) -> None:
    from backend.world_env import describe_diff, diff_manifests, load_manifest

    d = diff_manifests(load_manifest(args.a), load_manifest(args.b))
    if args.json:
        print(json.dumps(d, indent=2))
    else:
        print(describe_diff(d))


def add_commands(sub) -> None:
    from backend.config import BootstrapConfig

    p = sub.add_parser("bootstrap", help="build the embedded mini world (offline, CPU)")
    p.add_argument("--preset", choices=choices_of(BootstrapConfig, "preset"), default=None,
                   help="full (the product; build times in docs/results.md) or tiny (tests)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--force", action="store_true", help="rebuild even if a bundle exists")
    p.add_argument("--info", action="store_true", help="print the bundle's manifest")
    p.set_defaults(func=cmd_bootstrap)

    p = sub.add_parser("world-diff", help="what differs between two built worlds (manifests)")
    p.add_argument("a", help="a bundle directory or its manifest.json")
    p.add_argument("b", help="another bundle directory or manifest.json")
    p.add_argument("--json", action="store_true", help="print the differences as JSON")
    p.set_defaults(func=cmd_world_diff)
