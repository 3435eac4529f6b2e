"""What every Admin sub-tab shares: hiding events from the API, and reading form numbers."""

from __future__ import annotations

PRIVATE = {"api_visibility": "private"}
"""Event kwargs for admin events that no script needs; they are role-checked all the same."""


def whole(value) -> int | None:
    """A form number as an int; empty (or 0) means "use the configured default"."""
    return int(value) if value not in (None, "", 0) else None
