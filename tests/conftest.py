"""Shared fixtures. Area-specific fixtures live in tests/<area>/conftest.py."""

pytest_plugins = ["tests.mini_world"]
