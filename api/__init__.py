"""API: the staff and customer HTTP API, and the staff dashboard it serves (`api/static/`)."""
