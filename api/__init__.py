"""API: the staff and customer HTTP API (to come)."""
