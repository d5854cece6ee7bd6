"""Fleetwatch's shared core: settings, database access, migrations, embedded services, CLI."""
