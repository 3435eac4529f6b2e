"""Engine and session factory, plus schema upgrades through Alembic.

SQLite gets WAL, foreign keys and a busy timeout, and every `session()` starts with
BEGIN IMMEDIATE: a read that later writes would otherwise fail at once with "database is locked"
when another writer got in between (SQLite cannot wait on a stale snapshot). Pure reads that the
UI polls (leaderboard, job monitor, listings) use `read()` instead: a deferred BEGIN reads a WAL
snapshot without queueing behind writers, so a training job's progress writes and raters' votes
do not make them wait. Keep sessions short; never hold one open across long work such as training.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY = "studio_read_only"


def make_engine(url: str, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        dbapi_conn.isolation_level = None  # let us emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


class ReadOnlySessionError(RuntimeError):
    """A write was attempted in a `Store.read()` session."""


def _refuse_writes(session: Session, _ctx, _instances) -> None:  # noqa: ANN001
    if session.new or session.dirty or session.deleted:
        raise ReadOnlySessionError("this is a read-only session: use Store.session() to write")


class Store:
    """Owns one engine and hands out short-lived sessions."""

    def __init__(self, url: str, echo: bool = False):
        self.url = url
        self.engine = make_engine(url, echo=echo)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        self._read_factory = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}),
                                          expire_on_commit=False)
        event.listen(self._read_factory, "before_flush", _refuse_writes)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on any exception."""
        with self._factory() as s:
            with s.begin():
                yield s

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (see the module docstring); ORM writes in it raise
        ReadOnlySessionError. Ending it commits nothing (there is nothing to commit), and the
        objects read stay loaded, as with `session()`."""
        with self._read_factory() as s:
            with s.begin():
                yield s

    def upgrade(self, revision: str = "head") -> None:
        upgrade(self.engine, revision)

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(engine), revision)
