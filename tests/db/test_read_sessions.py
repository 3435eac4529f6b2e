"""`Store.read()`: pure reads never queue behind a writer, and never write."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

import db.session as session_mod
from db.schema import User
from db.session import ReadOnlySessionError, Store


@pytest.fixture
def store(db_url):
    st = Store(db_url)
    st.upgrade()
    with st.session() as s:
        s.add(User(name="rita", password_hash="x", role="rater"))
    yield st
    st.dispose()


def test_read_sees_the_committed_snapshot_while_a_writer_holds_the_lock(sqlite_url, monkeypatch):
    monkeypatch.setattr(session_mod, "SQLITE_BUSY_TIMEOUT_MS", 200)  # fail fast, not 30 s
    st = Store(sqlite_url)
    st.upgrade()
    with st.session() as s:
        s.add(User(name="rita", password_hash="x", role="rater"))
    writer = sqlite3.connect(sqlite_url.split("///", 1)[1], isolation_level=None, timeout=0.2)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO users (name, password_hash, role, active, created_at) "
                   "VALUES ('tom', 'x', 'rater', 1, CURRENT_TIMESTAMP)")
    try:
        with st.read() as s:  # does not wait for the writer, sees only committed rows
            assert s.scalar(select(func.count()).select_from(User)) == 1
        with pytest.raises(OperationalError, match="locked"):
            with st.session() as s:  # a write transaction must wait for the lock
                s.scalar(select(func.count()).select_from(User))
    finally:
        writer.execute("COMMIT")
        writer.close()
    with st.read() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 2
    st.dispose()


def test_a_write_in_a_read_session_is_refused_and_nothing_is_stored(store):
    with pytest.raises(ReadOnlySessionError):
        with store.read() as s:
            s.add(User(name="eve", password_hash="x", role="admin"))
    with pytest.raises(ReadOnlySessionError):
        with store.read() as s:
            s.scalar(select(User).where(User.name == "rita")).role = "admin"
    with store.read() as s:
        assert s.scalars(select(User.name)).all() == ["rita"]
        assert s.scalar(select(User.role)) == "rater"


def test_objects_read_stay_usable_after_the_session(store):
    with store.read() as s:
        user = s.scalar(select(User))
    assert user.name == "rita" and user.role == "rater"
