"""Shared pytest fixtures; the skip-or-fail rule for missing dependencies lives in tests/helpers.py."""
