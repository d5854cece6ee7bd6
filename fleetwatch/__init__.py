"""What starts Fleetwatch: the `fleetwatch` CLI, `serve`, the demo, the web server, and the
embedded PostgreSQL and broker used when no URL is configured. What everything stands on
(settings, database, MQTT connection, logging) is `core/`."""
