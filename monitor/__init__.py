"""Monitor: detection. Finds offline, never-seen and degraded devices, their return, fleet
outages and its own blind spots; opens and resolves their incidents through the lifecycle
(incidents/) and records the notices they owe (alerts/notices.py). It sends nothing."""
