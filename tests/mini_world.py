"""Session fixture that builds (or reuses from .cache/) the tiny mini-world bundle. Filled in by the
mini-world work (issue 5)."""
