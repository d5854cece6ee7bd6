"""Ingest: MQTT heartbeats and status messages into PostgreSQL, acknowledged only after commit."""
