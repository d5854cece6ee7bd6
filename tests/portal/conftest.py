"""Portal fixtures (tests/portal_support.py)."""

from portal_support import dispatcher, home

__all__ = ["dispatcher", "home"]
