"""Shared fixtures: a store on a real SQLite file (and on PostgreSQL when TEST_DATABASE_URL is
set), a Runtime over it. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("STUDIO_CONFIG", "/nonexistent/studio.toml")  # never read a developer's file
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest_plugins = ["tests.mini_world"]

PG_URL = os.environ.get("TEST_DATABASE_URL", "")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("STUDIO_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with STUDIO_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database: a SQLite file, and PostgreSQL too when TEST_DATABASE_URL is set."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL not set")
    _reset_postgres(PG_URL)
    return PG_URL


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def runtime(tmp_path, db_url):
    """A Runtime on a fresh store (schema at head) and an empty data directory."""
    from backend.config import Settings
    from backend.runtime import Runtime

    rt = Runtime(Settings(data_dir=tmp_path / "data", database_url=db_url))
    yield rt
    rt.close()


@pytest.fixture
def sqlite_runtime(tmp_path, sqlite_url):
    from backend.config import Settings
    from backend.runtime import Runtime

    rt = Runtime(Settings(data_dir=tmp_path / "data", database_url=sqlite_url))
    yield rt
    rt.close()
