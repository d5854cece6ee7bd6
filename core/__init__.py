"""What every Fleetwatch part stands on: settings, the database and its migrations, the MQTT
connection, logging, and the shape of a long-running worker.

Nothing here starts anything; `fleetwatch/` does (the CLI, `serve`, the demo, the web server,
the embedded PostgreSQL and broker).
"""
