"""Alerts: routing incidents to channels, the outbox, and delivery through Apprise."""
