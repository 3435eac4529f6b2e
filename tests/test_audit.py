"""scripts/audit.py against a real HTTP server on loopback that serves PyPI's JSON API shapes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

VULN = {"id": "PYSEC-2099-1", "aliases": ["CVE-2099-0001", "GHSA-xxxx"], "fixed_in": ["2.0"],
        "link": "https://osv.dev/vulnerability/PYSEC-2099-1", "withdrawn": None}
WITHDRAWN = {**VULN, "id": "PYSEC-2099-2", "aliases": [], "withdrawn": "2099-01-01T00:00:00"}

# path -> JSON body; anything else is a 404 ("/broken/..." answers 500).
PAGES = {
    "/pypi/clean/1.0/json": {"info": {"version": "1.0"}, "vulnerabilities": []},
    "/pypi/vulnerable/1.0/json": {"info": {"version": "1.0"}, "vulnerabilities": [VULN]},
    # only project JSON served (as on our machines): valid for the latest release only
    "/pypi/latest-only/json": {"info": {"version": "3.0"}, "vulnerabilities": [VULN, WITHDRAWN]},
    "/pypi/behind/json": {"info": {"version": "9.0"}, "vulnerabilities": []},
    "/pypi/my-pkg/1.0/json": {"info": {"version": "1.0"}, "vulnerabilities": [WITHDRAWN]},
    "/pypi/list/1.0/json": [1, 2],
    "/pypi/nullinfo-old/json": {"info": None, "vulnerabilities": None},
    **{f"/pypi/clean{i}/1.0/json": {"info": {"version": "1.0"}} for i in range(30)},
}


class _Index(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path.startswith("/pypi/broken/"):
            self.send_error(500)
            return
        if self.path.startswith("/pypi/cut/"):  # promises 1000 bytes, sends 10, hangs up
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"info": {')
            self.close_connection = True
            return
        body = PAGES.get(self.path)
        if body is None:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def index():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/pypi"
    server.shutdown()


def audit(tmp_path: Path, index: str, pins: str, allow: str = "", *extra: str):
    req = tmp_path / "requirements.txt"
    req.write_text(pins)
    allowlist = tmp_path / "allow.toml"
    allowlist.write_text(allow)
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "audit.py"), "--index", index, "--requirements",
         str(req), "--allowlist", str(allowlist), "--timeout", "5", *extra],
        capture_output=True, text=True, timeout=120)


def test_clean_pins_pass_and_withdrawn_advisories_do_not_count(tmp_path, index):
    r = audit(tmp_path, index, "clean==1.0\n# a comment\nMy_Pkg==1.0  # name normalized\n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 pins, 2 audited, 0 not audited, 0 unreachable, 0 finding(s)" in r.stdout


def test_a_finding_fails_with_its_ids_and_fix(tmp_path, index):
    r = audit(tmp_path, index, "clean==1.0\nvulnerable==1.0\n")
    assert r.returncode == 1
    assert "FINDING  vulnerable==1.0 PYSEC-2099-1 CVE-2099-0001" in r.stdout
    assert "fixed in: 2.0" in r.stdout


def test_project_data_counts_only_for_the_latest_release(tmp_path, index):
    r = audit(tmp_path, index, "latest-only==3.0\n")
    assert r.returncode == 1 and "FINDING  latest-only==3.0 PYSEC-2099-1" in r.stdout
    assert "PYSEC-2099-2" not in r.stdout  # withdrawn
    r = audit(tmp_path, index, "behind==1.0\nlatest-only==2.0\n")
    assert r.returncode == 0, r.stdout
    assert "not audited  behind==1.0: no release data served; latest is 9.0" in r.stdout
    assert "not audited  latest-only==2.0" in r.stdout
    assert "2 pins, 0 audited, 2 not audited" in r.stdout


def test_allowlist_by_alias_needs_a_reason_and_stale_entries_are_reported(tmp_path, index):
    allow = ('[[ignore]]\nid = "CVE-2099-0001"\npackage = "Vulnerable"\n'
             'reason = "we never call it"\n'
             '[[ignore]]\nid = "PYSEC-1"\npackage = "clean"\nreason = "old"\n')
    r = audit(tmp_path, index, "vulnerable==1.0\nclean==1.0\n", allow)
    assert r.returncode == 0, r.stdout
    assert "allowed  vulnerable==1.0 PYSEC-2099-1 (2.0): we never call it" in r.stdout
    assert "allowlist entry clean PYSEC-1 matched nothing" in r.stdout
    r = audit(tmp_path, index, "vulnerable==1.0\n",
              '[[ignore]]\nid = "PYSEC-2099-1"\npackage = "vulnerable"\nreason = " "\n')
    assert r.returncode != 0 and "needs id, package and a reason" in r.stderr
    # an entry for another package does not hide the finding
    r = audit(tmp_path, index, "vulnerable==1.0\n",
              '[[ignore]]\nid = "PYSEC-2099-1"\npackage = "clean"\nreason = "x"\n')
    assert r.returncode == 1


def test_unreachable_index_is_not_a_pass_unless_allowed_offline(tmp_path, index):
    r = audit(tmp_path, index, "broken==1.0\nclean==1.0\n")
    assert r.returncode == 2
    assert "unreachable  broken==1.0" in r.stdout and "WARNING" in r.stdout
    assert audit(tmp_path, index, "broken==1.0\n", "", "--offline-ok").returncode == 0
    closed = "http://127.0.0.1:9/pypi"  # discard port: connection refused
    assert audit(tmp_path, closed, "clean==1.0\n").returncode == 2


def test_unpinned_requirements_are_refused(tmp_path, index):
    r = audit(tmp_path, index, "clean>=1.0\n")
    assert r.returncode != 0 and "not pinned with ==" in r.stderr


def test_cut_or_malformed_replies_are_unreachable_not_a_crash(tmp_path, index):
    """A proxy that cuts a reply or answers with the wrong JSON must not crash the audit (a
    traceback would fail `make test` even with --offline-ok); once the index failed, the
    remaining pins are not tried again."""
    for name in ("cut", "list"):
        r = audit(tmp_path, index, f"{name}==1.0\n")
        assert r.returncode == 2, (name, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and f"unreachable  {name}==1.0" in r.stdout
    r = audit(tmp_path, index, "nullinfo-old==1.0\n")  # info: null on a project page
    assert r.returncode == 0 and "not audited  nullinfo-old==1.0" in r.stdout, r.stdout
    pins = "".join(f"clean{i}==1.0\n" for i in range(30))
    r = audit(tmp_path, "http://127.0.0.1:9/pypi", pins, "", "--offline-ok")  # refused
    assert r.returncode == 0 and "WARNING" in r.stdout
    assert "more pin(s) not tried once the index failed" in r.stdout
