"""Alembic: the first revision builds the schema on an empty database, every revision is
reversible, and the migrations match the SQLAlchemy models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from db.schema import Base
from db.session import Store, downgrade, upgrade


def _tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_empty_database_creates_every_table(db_url):
    store = Store(db_url)
    assert _tables(store.engine) == set()
    store.upgrade()
    assert _tables(store.engine) == set(Base.metadata.tables)
    store.dispose()


def test_migrations_are_reversible_and_repeatable(db_url):
    store = Store(db_url)
    upgrade(store.engine)
    downgrade(store.engine, "base")
    assert _tables(store.engine) == set()
    upgrade(store.engine)
    assert _tables(store.engine) == set(Base.metadata.tables)
    store.dispose()


def test_migrations_match_the_models(db_url):
    """Fails when someone changes db/schema.py without adding a revision."""
    store = Store(db_url)
    store.upgrade()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    store.dispose()
