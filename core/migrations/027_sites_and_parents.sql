-- Places and parents (issue 14, items 1-2): a device may belong to a site (a home, a
-- garage) and may name a parent device (a hub, a gateway, a router we monitor). The
-- monitor correlates their silence (monitor/sites.py): one incident for the site or the
-- parent, scope 'site', holding its members' own alerts like a fleet outage does.

-- A place of one customer's devices. Its timezone is the place's own (the message's local
-- times); its address line is what the owner recognises it by ("12 Oak Street").
CREATE TABLE sites (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._-]{1,64}$'),
    customer_id text REFERENCES customers (id) ON DELETE CASCADE,
    name        text NOT NULL,
    address     text,
    timezone    text NOT NULL DEFAULT 'UTC',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sites_customer ON sites (customer_id);

ALTER TABLE devices
    ADD COLUMN site_id   text REFERENCES sites (id) ON DELETE SET NULL,
    ADD COLUMN parent_id text REFERENCES devices (id) ON DELETE SET NULL,
    ADD CONSTRAINT devices_parent_not_self CHECK (parent_id <> id);
-- The monitor reads one site's or one parent's devices by these (a handful of rows),
-- never the fleet. A tick with 10,000 newly silent devices reads 30,000 of their sites'
-- devices: covering, so that is an index-only scan, not 30,000 heap fetches.
CREATE INDEX devices_site ON devices (site_id) INCLUDE (id, name, model_id, parent_id)
    WHERE site_id IS NOT NULL;
CREATE INDEX devices_parent ON devices (parent_id) WHERE parent_id IS NOT NULL;
-- Which of a tick's newly silent devices have a place at all, without a heap fetch each.
CREATE INDEX devices_placed ON devices (id) INCLUDE (site_id, parent_id)
    WHERE site_id IS NOT NULL OR parent_id IS NOT NULL;

-- Site incidents: group_key 'site:<id>' (kind site_offline) or 'hub:<device id>' (kind
-- hub_offline); their members join through incidents.fleet_incident_id as a fleet
-- outage's do.
ALTER TABLE incidents DROP CONSTRAINT incidents_scope_check;
ALTER TABLE incidents ADD CONSTRAINT incidents_scope_check
    CHECK (scope IN ('device', 'fleet', 'system', 'site'));
-- The monitor's periodic look at open site incidents reads only these.
CREATE INDEX incidents_site_open ON incidents (opened_at)
    WHERE scope = 'site' AND status <> 'resolved';

-- A home hub (Zigbee/Z-Wave gateway) that other devices connect through: a parent.
INSERT INTO device_models
    (id, name, device_type, kind, heartbeat_interval_s, allowed_misses, grace_s, critical)
VALUES ('hub-v1', 'Home hub v1', 'hub', 'home', 60, 3, 60, false)
ON CONFLICT (id) DO NOTHING;
