"""Audit the pinned requirements against PyPI's vulnerability data (the data pip-audit reads).

    python scripts/audit.py [--requirements requirements.txt] [--allowlist FILE] [--offline-ok]

Why not pip-audit itself: it asks PyPI for each pin's release JSON (`/pypi/NAME/VERSION/json`)
or OSV. Where only the project JSON (`/pypi/NAME/json`) is served, as on our build machines,
pip-audit skips every pin. This audit asks for the release JSON first and falls back to the
project JSON, whose `vulnerabilities` describe the latest release: valid for a pin exactly when
the pin *is* the latest release. A pin behind the latest, with no release JSON served, is listed
as not audited, never as clean.

Exit status: 0 no finding outside the allowlist; 1 findings; 2 the index could not be reached
(0 with `--offline-ok`, which prints the same warning). Allowlist entries (TOML) need a reason:

    [[ignore]]
    id = "PYSEC-2026-1"        # or any alias (CVE-..., GHSA-...)
    package = "somepkg"
    reason = "we never call the affected function"
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    name: str
    version: str
    status: str  # "audited" | "not audited" | "unreachable"
    detail: str = ""
    findings: list[dict] = field(default_factory=list)
    tried: bool = True
    """False when the index had already failed for another pin and this one was skipped."""


def read_pins(path: Path) -> list[tuple[str, str]]:
    """(name, version) of every `name==version` line; anything else is an error."""
    pins = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as e:
            raise SystemExit(f"{path}:{n}: cannot parse {raw!r}: {e}") from e
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            raise SystemExit(f"{path}:{n}: {raw!r} is not pinned with == (the audit needs exact "
                             "versions)")
        pins.append((req.name, specs[0].version))
    return pins


def read_allowlist(path: Path | None) -> list[dict]:
    if path is None or not path.is_file():
        return []
    entries = tomllib.loads(path.read_text()).get("ignore", [])
    for e in entries:
        if not (e.get("id") and e.get("package") and str(e.get("reason", "")).strip()):
            raise SystemExit(f"{path}: every [[ignore]] needs id, package and a reason: {e}")
    return entries


class IndexDown:
    """Set once a request has failed after its retries: the other pins then skip the network
    (silently dropped packets would otherwise cost a minute per pin)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        self.reason = self.reason or reason
        self.event.set()


def _get_json(url: str, timeout: float, tries: int = 3) -> dict | None:
    """The JSON object at `url`; None on 404; raises OSError when it cannot be had (network,
    HTTP errors other than 404, a reply that is not a JSON object)."""
    err = OSError(f"no request made to {url}")
    for attempt in range(max(1, tries)):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                body = json.load(r)
            if isinstance(body, dict):
                return body
            err = OSError(f"{url}: reply is not a JSON object")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            err = e
        except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, cut replies
            err = e if isinstance(e, OSError) else OSError(f"{url}: {e!r}")
        except ValueError as e:
            err = OSError(f"{url}: bad JSON: {e}")
        if attempt + 1 < tries:
            time.sleep(0.5 * 2 ** attempt)
    raise err


def _live(vulns) -> list[dict]:
    return [v for v in (vulns if isinstance(vulns, list) else [])
            if isinstance(v, dict) and not v.get("withdrawn")]


def _same_version(a: str | None, b: str) -> bool:
    try:
        return a is not None and Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def audit_pin(index: str, name: str, version: str, timeout: float, down: IndexDown) -> Result:
    if down.event.is_set():
        return Result(name, version, "unreachable", f"not tried: {down.reason}", tried=False)
    key = canonicalize_name(name)
    try:
        release = _get_json(f"{index}/{key}/{version}/json", timeout)
        if release is not None:
            return Result(name, version, "audited", "release data",
                          _live(release.get("vulnerabilities")))
        project = _get_json(f"{index}/{key}/json", timeout)
    except OSError as e:
        down.set(str(e))
        return Result(name, version, "unreachable", str(e))
    if project is None:
        return Result(name, version, "not audited", "not on the index")
    latest = (project.get("info") or {}).get("version")
    if not _same_version(latest, version):
        return Result(name, version, "not audited",
                      f"no release data served; latest is {latest}, whose data does not apply")
    return Result(name, version, "audited", "latest-release data",
                  _live(project.get("vulnerabilities")))


def _allowed(finding: dict, package: str, allow: list[dict]) -> dict | None:
    ids = {finding.get("id"), *(finding.get("aliases") or [])}
    for e in allow:
        if canonicalize_name(e["package"]) == canonicalize_name(package) and e["id"] in ids:
            return e
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requirements", type=Path, default=ROOT / "requirements.txt")
    ap.add_argument("--allowlist", type=Path, default=ROOT / "scripts" / "audit-allowlist.toml")
    ap.add_argument("--index", default="https://pypi.org/pypi",
                    help="JSON API root (a mirror or a test server)")
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--offline-ok", action="store_true",
                    help="exit 0 when the index cannot be reached (still printed)")
    args = ap.parse_args(argv)

    pins = read_pins(args.requirements)
    allow = read_allowlist(args.allowlist)
    index = args.index.rstrip("/")
    down = IndexDown()
    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(lambda p: audit_pin(index, *p, args.timeout, down), pins))

    failing = 0
    used_allow = set()
    for r in results:
        for f in r.findings:
            entry = _allowed(f, r.name, allow)
            fixed = ", ".join(f.get("fixed_in") or []) or "no fix"
            if entry:
                used_allow.add((entry["package"], entry["id"]))
                print(f"allowed  {r.name}=={r.version} {f.get('id')} ({fixed}): {entry['reason']}")
            else:
                failing += 1
                print(f"FINDING  {r.name}=={r.version} {f.get('id')} "
                      f"{' '.join(f.get('aliases') or [])} (fixed in: {fixed}) {f.get('link', '')}")
    skipped = 0
    for r in results:
        if not r.tried:
            skipped += 1
        elif r.status != "audited":
            print(f"{r.status:<12} {r.name}=={r.version}: {r.detail}")
    if skipped:
        print(f"unreachable  {skipped} more pin(s) not tried once the index failed")
    for e in allow:
        if (e["package"], e["id"]) not in used_allow:
            print(f"note: allowlist entry {e['package']} {e['id']} matched nothing; remove it?")

    audited = sum(r.status == "audited" for r in results)
    unreachable = sum(r.status == "unreachable" for r in results)
    print(f"audit: {len(results)} pins, {audited} audited, "
          f"{len(results) - audited - unreachable} not audited, {unreachable} unreachable, "
          f"{failing} finding(s) outside the allowlist ({args.index})")
    if failing:
        return 1
    if unreachable:
        print("audit: WARNING the vulnerability data could not be reached; pins above unaudited")
        return 0 if args.offline_ok else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
