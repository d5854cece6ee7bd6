"""Alerts: every message Fleetwatch sends. Owns the notices producers record, their router,
the outbox (`notifications`, `delivery_attempts`), escalation and reminders, templates and
delivery through Apprise; `fleetwatch alerts` runs it (alerts/service.py)."""
