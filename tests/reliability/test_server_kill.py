"""SIGKILL of the server in the middle of voting: every acknowledged vote survives exactly once,
and a restarted server on the same data directory takes votes again.

A vote is acknowledged when the reply to `rate_vote` says "Saved". Raters vote in threads through
the HTTP API (tests/reliability/rater_client.py); before each vote a rater notes the task it is
voting on (its one open assignment, read from the store read-only). The server is killed while
votes are in flight, then restarted. The test fails if an acknowledged vote is missing (as it would
be if the reply went out before the commit), stored twice, or if a stored vote is neither
acknowledged nor in flight at the kill.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.app.conftest import Server
from tests.polling import wait_for
from tests.reliability.rater_client import ApiError, CallFailed, Rater

RATERS = [f"killrater{i}" for i in range(6)]
PASSWORD = "kill-rater-pass"
ENV = {"STUDIO_RATING__GOLD_FRACTION": "0"}
ACKED_BEFORE_KILL = 15


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """A store seeded through the services: 0.2 s clips, 48 A/B tasks, six raters."""
    from backend.config import Settings
    from backend.runtime import Runtime
    from tests.rating.seed import seed

    data = tmp_path / "data"
    rt = Runtime(Settings(data_dir=data, world="mini"))
    try:
        seed(rt, n_prompts=12, seconds=0.2, raters=RATERS, password=PASSWORD, split="bench",
             samples_per_version=4, per_prompt_pairs=4)
    finally:
        rt.close()
    return data


def read_only(data: Path) -> sqlite3.Connection:
    """A read-only connection: WAL readers neither wait for nor block the server's writers."""
    return sqlite3.connect(f"file:{data / 'studio.db'}?mode=ro", uri=True, timeout=30)


def open_task(data: Path, name: str) -> int | None:
    """The task of the rater's open assignment (a rater has at most one)."""
    with read_only(data) as db:
        row = db.execute(
            "SELECT a.task_id FROM task_assignments a JOIN users u ON u.id = a.user_id "
            "WHERE u.name = ? AND a.status = 'assigned'", (name,)).fetchone()
    return row[0] if row else None


def stored_ab_votes(data: Path) -> dict[tuple[str, int], int]:
    """(rater name, task id) -> number of A/B judgment rows."""
    with read_only(data) as db:
        rows = db.execute(
            "SELECT u.name, j.task_id, count(*) FROM judgments j JOIN users u ON u.id = j.user_id"
            " WHERE j.kind = 'ab' GROUP BY u.name, j.task_id").fetchall()
    return {(name, task): n for name, task, n in rows}


@dataclass
class Ledger:
    """What the raters were told, shared by their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: list[tuple[str, int]] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    ended: list[str] = field(default_factory=list)


def vote_until_stopped(url: str, data: Path, name: str, ledger: Ledger,
                       stop: threading.Event) -> None:
    rater = Rater(url, name, PASSWORD, timeout=20)
    try:
        rater.login()
        has = rater.load_task()
        while has and not stop.is_set():
            task = open_task(data, name)
            rater.play_both()
            with ledger.lock:
                ledger.in_flight[name] = task
            vote = rater.vote("A" if len(ledger.acked) % 2 else "B")
            with ledger.lock:
                del ledger.in_flight[name]
                if vote.saved:
                    ledger.acked.append((name, task))
            has = vote.has_next
        ledger.ended.append(f"{name}: stopped (tasks left: {has})")
    except (ApiError, CallFailed) as e:
        ledger.ended.append(f"{name}: {type(e).__name__}: {e}")
    finally:
        rater.close()


def kill_mid_vote(srv: Server, ledger: Ledger, timeout: float = 60) -> dict[str, int]:
    """Once enough votes are acknowledged, SIGKILL the server while a vote is in flight.
    Returns the votes in flight at the kill (their outcome is unknown to the raters)."""
    def enough_acked() -> bool:
        assert srv.proc.poll() is None, srv.log()
        return len(ledger.acked) >= ACKED_BEFORE_KILL

    wait_for(enough_acked, timeout,
             lambda: f"{ACKED_BEFORE_KILL} acknowledged votes (raters ended: {ledger.ended})", 0.05)
    soon = time.monotonic() + 10
    while not ledger.in_flight and time.monotonic() < soon:
        time.sleep(0.001)
    with ledger.lock:  # no reply is recorded between this snapshot and the kill
        in_flight = dict(ledger.in_flight)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
    srv._log.close()
    return in_flight


def test_votes_survive_server_sigkill(data_dir):
    srv = Server(data_dir, ENV)
    ledger, stop = Ledger(), threading.Event()
    threads = [threading.Thread(target=vote_until_stopped, args=(srv.url, data_dir, n, ledger,
                                                                  stop), daemon=True)
               for n in RATERS]
    try:
        for t in threads:
            t.start()
        in_flight = kill_mid_vote(srv, ledger)
    finally:
        stop.set()
        if srv.proc.poll() is None:
            srv.stop()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a rater call never ended"
    assert srv.proc.returncode == -signal.SIGKILL
    acked = list(ledger.acked)
    assert len(acked) >= ACKED_BEFORE_KILL and in_flight, (acked, in_flight)

    srv2 = Server(data_dir, ENV)  # same data dir, a new process
    try:
        stored = stored_ab_votes(data_dir)
        missing = [v for v in acked if v not in stored]
        assert not missing, f"acknowledged votes lost: {missing}"
        assert len(set(acked)) == len(acked), "a vote was acknowledged as new twice"
        assert all(n == 1 for n in stored.values()), f"duplicated votes: {stored}"
        unexplained = set(stored) - set(acked) - set(in_flight.items())
        assert not unexplained, f"stored votes nobody sent: {unexplained}"
        with read_only(data_dir) as db:
            done = db.execute(
                "SELECT count(*) FROM task_assignments WHERE status = 'done'").fetchone()[0]
        assert done == len(stored), "an assignment marked done without its vote, or vice versa"
        print(f"\n{len(acked)} votes acknowledged, {len(in_flight)} in flight at the kill, "
              f"{len(stored)} stored after the restart")

        # the restarted server takes votes again, from a rater whose vote was cut off if any
        name = next(iter(in_flight))
        again = Rater(srv2.url, name, PASSWORD, timeout=20)
        try:
            again.login()
            assert again.load_task()
            task = open_task(data_dir, name)
            again.play_both()
            assert again.vote("tie").saved
        finally:
            again.close()
        after = stored_ab_votes(data_dir)
        assert after.get((name, task)) == 1, "the restarted server acknowledged a vote not stored"
        assert len(after) == len(stored) + 1
    finally:
        srv2.stop()
