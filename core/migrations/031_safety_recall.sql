-- A safety recall that carries its remedy (campaigns/remedy.py): an over-the-air update
-- (target version, artifact, waves, windows and gates as an update has) or a service visit
-- (instructions only). Each device's row says, beside its update's steps, when its owner
-- was told, acknowledged, was followed up, and when the device was remedied.

ALTER TABLE campaigns DROP CONSTRAINT campaigns_kind_check;
ALTER TABLE campaigns ADD CONSTRAINT campaigns_kind_check
    CHECK (kind IN ('recall_notice', 'ota_update', 'safety_recall'));
ALTER TABLE campaigns
    ADD COLUMN remedy text CHECK (remedy IN ('ota_update', 'service_visit')),
    -- The firmware range that has the fix (a specifier, campaigns/targeting.py): a device
    -- reporting a version in it is remedied, whatever installed it.
    ADD COLUMN fixed_in text,
    -- Safety-critical: the notice goes to every channel of the owner at once, urgently.
    ADD COLUMN safety_critical boolean,
    -- What to avoid meanwhile ("towing, and charging above 80 %").
    ADD COLUMN avoid text,
    ADD CONSTRAINT campaigns_safety_recall_check CHECK (
        kind <> 'safety_recall'
        OR (remedy IS NOT NULL AND fixed_in IS NOT NULL AND safety_critical IS NOT NULL
            AND safe_to_use IS NOT NULL AND instructions IS NOT NULL
            AND (remedy <> 'ota_update'
                 OR (target_version IS NOT NULL AND artifact_url IS NOT NULL
                     AND artifact_sha256 IS NOT NULL))));

-- remedied: the device already had (or got, other than by this campaign's update) the fix.
ALTER TABLE campaign_devices DROP CONSTRAINT campaign_devices_state_check;
ALTER TABLE campaign_devices ADD CONSTRAINT campaign_devices_state_check
    CHECK (state IN ('pending', 'sent', 'accepted', 'downloading', 'installing', 'rebooting',
                     'succeeded', 'failed', 'notified', 'acknowledged', 'skipped', 'cancelled',
                     'remedied'));
ALTER TABLE campaign_devices
    -- When the device was known to carry the fix: its update succeeded, or it had it.
    ADD COLUMN remedied_at timestamptz,
    -- Follow-up notices sent so far, and the last one's time (campaigns/remedy.py).
    ADD COLUMN follow_ups integer NOT NULL DEFAULT 0,
    ADD COLUMN followed_up_at timestamptz;

-- Completion per device reads the campaign's messages by device; this index also serves
-- every lookup by campaign alone, which 009's did.
CREATE INDEX notifications_campaign_device ON notifications (campaign_id, device_id)
    WHERE campaign_id IS NOT NULL;
DROP INDEX notifications_campaign;
