"""Message templates, as data: a new message is a new entry, not a new branch.

Every field a template uses comes from the notification's context, which was taken from
exactly that device's registry row when the event happened.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Template:
    title: str
    body: str
    # How one notification reads as a line of a digest ("3 of your devices are offline").
    digest_line: str
    # The short forms (alerts/render.py): an SMS is this one line and the link (no greeting:
    # it must fit one or two segments, so GSM characters only); a push is the title and
    # this one line, the link its click action where the service has one.
    sms: str
    line: str
    # What the message is about, which decides its fate when its incident moves on:
    #   problem   moot once the incident is resolved: an owner's copy still waiting is
    #             cancelled, never sent
    #   recovery  sent to an owner only if they were told of the problem
    #   notice    neither (a campaign's notice, a staff message)
    about: str = "problem"
    # While the device's incident is part of a group incident (a fleet outage), the owner's
    # message is held; once owners are told of the outage, it is this template instead.
    in_outage: str | None = None
    # ...except for a critical device (an alarm panel): never held, it goes at once as this
    # template, which says that many devices went offline together.
    critical_in_outage: str | None = None
    # The context field holding the message's link (the customer's page for it, added when
    # the dispatcher claims it; a recall's confirmation link), and what the email's button
    # to it says.
    link_field: str = "link"
    link_label: str = "See it in Fleetwatch"
    # Sent alone, never as a line of a digest: a safety recall's notice must reach every
    # channel whole (the vehicle named in each form, its own confirmation link).
    alone: bool = False


# What a customer can do, per kind of device, when it goes quiet.
WHAT_TO_DO = {
    "thermostat": "Check that it has power and that your Wi-Fi works; if its display is "
    "blank, replace its batteries.",
    "alarm_panel": "Your home may not be protected. Check the panel's power and internet "
    "connection now, and call your alarm provider if it stays offline.",
    "camera": "Check its power and Wi-Fi signal; cameras far from the router often drop off.",
    "ev_charger": "Check the charger's circuit breaker and network cable or Wi-Fi.",
    "car": "The car may be out of mobile coverage or its battery may be low. Start the car "
    "or move it into coverage.",
    "hub": "Check the hub's power and its cable or Wi-Fi to your router: the devices that "
    "connect through it are offline while it is.",
}
DEFAULT_WHAT_TO_DO = "Check that it has power and a network connection."
# What to do about a degraded-health problem, by template; any other falls back to the
# device kind's WHAT_TO_DO (a flaky link is a connection problem).
HEALTH_WHAT_TO_DO = {
    "device_low_battery": "Recharge or replace its battery soon: when it runs out, the "
    "device stops working and stops reporting.",
    "device_battery_drain": "Recharge or replace its battery before then. If it drains this "
    "fast again, something keeps it busy: check its settings or contact support.",
    "device_reboot_loop": "Check its power supply and cable. If it keeps restarting, "
    "contact support: it may need a firmware update or a repair.",
    "device_temperature": "Check where it is installed: direct sun, a heat source nearby "
    "or frost can push it outside the range it is built for.",
    "device_metric_silent": "The sensor may be loose, covered or broken. Restart the "
    "device; if the reading does not come back, contact support.",
}

DEVICE_KIND_NAMES = {
    "thermostat": "thermostat",
    "alarm_panel": "alarm panel",
    "camera": "camera",
    "ev_charger": "EV charger",
    "car": "car",
    "hub": "hub",
}

TEMPLATES: dict[str, Template] = {
    "device_offline": Template(
        title="Your {device_kind} {device_name} went offline",
        body=(
            "Hello {customer_name},\n\n"
            "Your {device_kind} {device_name} ({model_name}, {identity}) went offline at "
            "{since_local}.\n\n"
            "What to do: {what_to_do}\n\n"
            "We will tell you when it is back online."
        ),
        digest_line="{device_name} ({model_name}, {identity}) offline since {since_local}",
        in_outage="device_offline_known_outage",
        critical_in_outage="device_offline_during_outage",
        sms="Fleetwatch: your {device_kind} {device_name} went offline at {since_local}.",
        line="Offline since {since_local}. {what_to_do}",
    ),
    # An offline device that had announced when it would check in (a parked car asleep,
    # contract 1.1), or whose model's active hours began: it did not wake up.
    "device_missed_checkin": Template(
        title="Your {device_kind} {device_name} did not wake up as expected",
        body=(
            "Hello {customer_name},\n\n"
            "Your {device_kind} {device_name} ({model_name}, {identity}) did not wake up as "
            "expected at {expected_local}. We last heard from it at {since_local}.\n\n"
            "What to do: {what_to_do}\n\n"
            "We will tell you when it is back online."
        ),
        digest_line="{device_name} ({model_name}, {identity}) did not wake up as expected at "
        "{expected_local}",
        in_outage="device_offline_known_outage",
        critical_in_outage="device_offline_during_outage",
        sms="Fleetwatch: your {device_kind} {device_name} did not wake up as expected at "
        "{expected_local}.",
        line="Did not wake up as expected at {expected_local}. {what_to_do}",
    ),
    "device_offline_during_outage": Template(
        title="Your {device_kind} {device_name} went offline",
        body=(
            "Hello {customer_name},\n\n"
            "Your {device_kind} {device_name} ({model_name}, {identity}) went offline at "
            "{since_local}.\n\n"
            "Many devices in your area went offline at the same time ({outage}); we are "
            "looking into it. Because this is your {device_kind}, we are telling you now "
            "instead of waiting for that to be cleared up.\n\n"
            "What to do now: {what_to_do}\n\n"
            "We will tell you when it is back online."
        ),
        digest_line="{device_name} ({model_name}, {identity}) offline since {since_local}, "
        "in a wider outage",
        sms=(
            "Fleetwatch: your {device_kind} {device_name} went offline at "
            "{since_local}, in a wider outage."
        ),
        line="Offline since {since_local}, with many devices nearby. {what_to_do}",
    ),
    "device_back_online": Template(
        title="Your {device_kind} {device_name} is back online",
        body=(
            "Hello {customer_name},\n\n"
            "Your {device_kind} {device_name} ({model_name}, {identity}) is back online "
            "since {back_local}, after being offline for {downtime}.\n\n"
            "Nothing more to do."
        ),
        digest_line="{device_name} ({model_name}, {identity}) back online after {downtime}",
        about="recovery",
        sms="Fleetwatch: your {device_kind} {device_name} is back online after {downtime}.",
        line=("Back online since {back_local}, after {downtime} offline. Nothing more to do."),
    ),
    # A place's devices silent together (monitor/sites.py): one message naming the place
    # and each device (`devices_text`, from `device_ids`), critical when one of them is.
    "site_offline": Template(
        title="{site_name} seems to have lost its internet connection",
        body=(
            "Hello {customer_name},\n\n"
            "{site_name} ({site_address}) seems to have lost its internet connection: "
            "{devices_text} went offline together at {since_local}.\n\n"
            "What to do: check that your router has power and that its internet light is "
            "on; restart it if not. If the power is out, your devices will come back with "
            "it.\n\n"
            "We will tell you when they are back online."
        ),
        digest_line="{site_name}: {devices_title} offline together since {since_local}",
        sms=(
            "Fleetwatch: {site_name} seems to have lost its internet: {devices_title} went offline."
        ),
        line="{device_names} went offline together at {since_local}. Check your router.",
    ),
    "site_back_online": Template(
        title="{site_name} is back online",
        body=(
            "Hello {customer_name},\n\n"
            "{site_name} ({site_address}) is back online since {back_local}, after being "
            "offline for {downtime}: {devices_text}.\n\n"
            "Nothing more to do."
        ),
        digest_line="{site_name} back online after {downtime}",
        about="recovery",
        sms="Fleetwatch: {site_name} is back online after {downtime}.",
        line="Back online since {back_local}, after {downtime} offline. Nothing more to do.",
    ),
    # A parent device (a hub, a gateway) silent: the hub is the news, the devices behind it
    # the list.
    "hub_offline": Template(
        title="Your hub {hub_name} went offline",
        body=(
            "Hello {customer_name},\n\n"
            "Your hub {hub_name} went offline at {since_local}, and with it the devices "
            "that connect through it: {devices_text}.\n\n"
            "What to do: check the hub's power and its connection to your router; the "
            "devices behind it will come back with it.\n\n"
            "We will tell you when it is back online."
        ),
        digest_line="Hub {hub_name} offline since {since_local}, with {devices_title}",
        sms=("Fleetwatch: your hub {hub_name} went offline, with {devices_title}."),
        line="Offline since {since_local}, with {device_names}. Check its power.",
    ),
    "hub_back_online": Template(
        title="Your hub {hub_name} is back online",
        body=(
            "Hello {customer_name},\n\n"
            "Your hub {hub_name} is back online since {back_local}, after being offline "
            "for {downtime}, and with it {devices_text}.\n\n"
            "Nothing more to do."
        ),
        digest_line="Hub {hub_name} back online after {downtime}",
        about="recovery",
        sms="Fleetwatch: your hub {hub_name} is back online after {downtime}.",
        line="Back online since {back_local}, after {downtime} offline. Nothing more to do.",
    ),
    "device_never_seen": Template(
        title="Your new {device_kind} {device_name} has not connected yet",
        body=(
            "Hello {customer_name},\n\n"
            "Your {device_kind} {device_name} ({model_name}, {identity}) was registered at "
            "{since_local} but has not connected to us yet.\n\n"
            "What to do: finish its set-up and connect it to your network. {what_to_do}"
        ),
        digest_line="{device_name} ({model_name}, {identity}) has not connected yet",
        in_outage="device_offline_known_outage",
        sms=(
            "Fleetwatch: your new {device_kind} {device_name} has not connected "
            "yet. Finish its set-up."
        ),
        line="Registered at {since_local}, not connected yet: finish its set-up.",
    ),
    "device_unstable": Template(
        title="Your {device_kind} {device_name} keeps losing its connection",
        body=(
            "Hello {customer_name},\n\n"
            "Your {device_kind} {device_name} ({model_name}, {identity}) has dropped off "
            "{spells} times within {window}, most recently at {since_local}.\n\n"
            "We will not send a message for every drop while this goes on.\n\n"
            "What to do: the connection is weak or the power unsteady. {what_to_do}"
        ),
        digest_line="{device_name} ({model_name}, {identity}) keeps losing its connection",
        sms=(
            "Fleetwatch: your {device_kind} {device_name} dropped off {spells} "
            "times within {window}."
        ),
        line=("Dropped off {spells} times within {window}: a weak connection or unsteady power."),
    ),
    # Degraded health (monitor/rules.py): one per rule name, `device_<name>`.
    "device_low_battery": Template(
        title="Your {device_kind} {device_name} battery is low ({value}%)",
        body=(
            "Hello {customer_name},\n\n"
            "Your {device_kind} {device_name} ({model_name}, {identity}) battery is at "
            "{value}%, below {limit}% for {held} (noticed at {since_local}).\n\n"
            "What to do: {what_to_do}"
        ),
        digest_line="{device_name} ({model_name}, {identity}) battery at {value}%",
        sms=(
            "Fleetwatch: your {device_kind} {device_name} battery is at {value}%. "
            "Recharge or replace it soon."
        ),
        line="Battery at {value}%, below {limit}%. Recharge or replace it soon.",
    ),
    "device_battery_drain": Template(
        title="Your {device_kind} {device_name} battery will run out in about {empty_in}",
        body=(
            "Hello {customer_name},\n\n"
            "Your {device_kind} {device_name} ({model_name}, {identity}) battery is at "
            "{value}% and falling by about {rate_per_h}% an hour: at this rate it will run "
            "out in about {empty_in} (noticed at {since_local}).\n\n"
            "What to do: {what_to_do}"
        ),
        digest_line="{device_name} ({model_name}, {identity}) battery runs out in about {empty_in}",
        sms=(
            "Fleetwatch: your {device_kind} {device_name} battery ({value}%) runs "
            "out in about {empty_in}."
        ),
        line=("Battery at {value}%, falling {rate_per_h}% an hour: recharge or replace it."),
    ),
    "device_reboot_loop": Template(
        title="Your {device_kind} {device_name} keeps restarting",
        body=(
            "Hello {customer_name},\n\n"
            "Your {device_kind} {device_name} ({model_name}, {identity}) has restarted "
            "{resets} times within {window} (noticed at {since_local}).\n\n"
            "What to do: {what_to_do}"
        ),
        digest_line="{device_name} ({model_name}, {identity}) restarted {resets} times "
        "within {window}",
        sms=(
            "Fleetwatch: your {device_kind} {device_name} restarted {resets} times within {window}."
        ),
        line=("Restarted {resets} times within {window}. Check its power supply and cable."),
    ),
    "device_flaky_link": Template(
        title="Your {device_kind} {device_name} has a weak connection",
        body=(
            "Hello {customer_name},\n\n"
            "Your {device_kind} {device_name} ({model_name}, {identity}) is online, but "
            "{value}% of the check-ins we expected from it within {window} did not arrive "
            "({received} of {expected} did; noticed at {since_local}).\n\n"
            "What to do: {what_to_do}"
        ),
        digest_line="{device_name} ({model_name}, {identity}) has a weak connection",
        sms=(
            "Fleetwatch: your {device_kind} {device_name} has a weak connection "
            "({value}% of check-ins lost)."
        ),
        line="{value}% of its check-ins within {window} did not arrive. {what_to_do}",
    ),
    "device_temperature": Template(
        title="Your {device_kind} {device_name} is at {value} °C",
        body=(
            "Hello {customer_name},\n\n"
            "Your {device_kind} {device_name} ({model_name}, {identity}) reports {value} °C, "
            "{side} the {limit} °C it is built for, for {held} (noticed at {since_local})."
            "\n\nWhat to do: {what_to_do}"
        ),
        digest_line="{device_name} ({model_name}, {identity}) at {value} °C",
        sms=(
            "Fleetwatch: your {device_kind} {device_name} is at {value} C, {side} "
            "the {limit} C it is built for."
        ),
        line=("At {value} °C, {side} the {limit} °C it is built for. Check where it is installed."),
    ),
    # A silent sensor (monitor/rules.py, kind silent_metric), whatever its rule's name.
    "device_metric_silent": Template(
        title="Your {device_kind} {device_name} stopped reporting its {metric}",
        body=(
            "Hello {customer_name},\n\n"
            "Your {device_kind} {device_name} ({model_name}, {identity}) is online, but its "
            "{metric} has not reported for {silent} (noticed at {since_local}).\n\n"
            "What to do: {what_to_do}"
        ),
        digest_line="{device_name} ({model_name}, {identity}): no {metric} for {silent}",
        sms="Fleetwatch: your {device_kind} {device_name} stopped reporting its {metric} "
        "({silent}).",
        line="Online, but no {metric} for {silent}. {what_to_do}",
    ),
    "system_blind_spot": Template(
        title="Fleetwatch cannot see the fleet: no heartbeats since {since_utc}",
        body=(
            "No ingest has received any message since {since_utc}, although the fleet "
            "should send about {expected_per_min} a minute.\n\n"
            "No device is declared offline and customers are not alerted while this lasts.\n\n"
            "Check the MQTT broker, the ingest processes and the network between them."
        ),
        digest_line="blind spot since {since_utc}",
        sms=(
            "Fleetwatch: no heartbeats from the fleet since {since_utc}. Check the "
            "broker and the ingest."
        ),
        line=("No heartbeats since {since_utc}. Check the broker, the ingest and the network."),
    ),
    "system_blind_spot_resolved": Template(
        title="Fleetwatch sees the fleet again",
        body=(
            "Messages are arriving again at {back_utc}, after {duration} without any.\n\n"
            "Offline decisions wait {grace} so that devices can reconnect first."
        ),
        digest_line="sight regained after {duration}",
        about="recovery",
        sms="Fleetwatch sees the fleet again, after {duration} without heartbeats.",
        line="Messages arrive again since {back_utc}, after {duration} without any.",
    ),
    "device_offline_known_outage": Template(
        title="We know about an outage affecting your {device_kind} {device_name}",
        body=(
            "Hello {customer_name},\n\n"
            "Your {device_kind} {device_name} ({model_name}, {identity}) has been offline "
            "since {since_local}, as part of a wider outage we are already working on: "
            "{outage}.\n\n"
            "It is not your equipment, and there is nothing you need to do. We will tell you "
            "when it is back online."
        ),
        digest_line="{device_name} ({model_name}, {identity}) offline since {since_local}",
        sms=(
            "Fleetwatch: your {device_kind} {device_name} is offline in a wider "
            "outage we are fixing. Nothing to do."
        ),
        line=("Offline since {since_local}, in a wider outage we are working on. Nothing to do."),
    ),
    "fleet_outage": Template(
        title="Fleet outage: {summary}",
        body=(
            "{down} of {size} devices in {group} went offline within {window} "
            "(opened {opened}).\n\n"
            "Customer alerts for these devices are held; if it lasts, each owner is told "
            "once that we know. Look at the broker, the network and the region's provider."
        ),
        digest_line="fleet outage: {summary}",
        sms=(
            "Fleetwatch: fleet outage, {down} of {size} devices in {group} offline within {window}."
        ),
        line=("{down} of {size} devices in {group} offline within {window}; owners' alerts held."),
    ),
    "release_health_digest": Template(
        title="Release health, {week_of}: {release_summary}",
        body=(
            "Each firmware version against the version it replaced on the same model, over "
            "{week_of}: the ratio of their rates with its 95% interval. Worse or better only "
            "where the interval excludes 1; a small cohort reads unclear.\n\n"
            "{release_report}"
        ),
        digest_line="release health: {release_summary}",
        about="notice",
        sms="Fleetwatch release health, {week_of}: {release_summary}.",
        line="{week_of}: {release_summary}.",
    ),
    "fleet_outage_resolved": Template(
        title="Fleet outage over: {group}",
        body=(
            "{summary}\n\nOver after {duration}: {still} of {affected} devices are still "
            "offline, and their owners' alerts go out now."
        ),
        digest_line="fleet outage over: {group}",
        about="recovery",
        sms=(
            "Fleetwatch: fleet outage in {group} over after {duration}; {still} "
            "devices still offline."
        ),
        line="Over after {duration}: {still} of {affected} devices still offline.",
    ),
    "device_offline_reminder": Template(
        title="Reminder: your {device_kind} {device_name} is still offline",
        body=(
            "Hello {customer_name},\n\n"
            "Your {device_kind} {device_name} ({model_name}, {identity}) has been offline "
            "since {since_local}, for {for} now.\n\n"
            "What to do: {what_to_do}"
        ),
        digest_line="{device_name} ({model_name}, {identity}) still offline, for {for}",
        sms="Fleetwatch: your {device_kind} {device_name} is still offline, for {for} now.",
        line="Still offline since {since_local}, for {for} now. {what_to_do}",
    ),
    "incident_escalated": Template(
        title="Not acknowledged after {waited}: {summary}",
        body=(
            "Incident {incident_id} ({summary}) opened at {opened} and nobody has "
            "acknowledged it for {waited}.\n\n"
            "Acknowledge it with: fleetwatch incidents ack {incident_id} --by <your name>"
        ),
        digest_line="not acknowledged after {waited}: {summary}",
        sms="Fleetwatch: incident {incident_id} not acknowledged after {waited}: {summary}",
        line=(
            "Opened {opened}, not acknowledged for {waited}: fleetwatch incidents ack {incident_id}"
        ),
    ),
    # -- staff's updates on an incident or a fleet outage (alerts/updates.py): one message
    # per owner, naming each of their devices it concerns (alerts.context.devices_context);
    # the producer words the promise in the owner's timezone.
    "incident_update": Template(
        title="Update on {devices_title}",
        body=(
            "Hello {customer_name},\n\n"
            "An update from our team about {devices_text}:\n\n"
            "{update_text}\n\n"
            "{next_update_text}"
        ),
        digest_line="Update on {devices_title}: {update_text}",
        sms="Fleetwatch update on {devices_title}: {update_text}",
        line="{update_text}",
    ),
    "outage_reminder": Template(
        title="Still working on the outage affecting {devices_title}",
        body=(
            "Hello {customer_name},\n\n"
            "The outage affecting {devices_text} is still going on, for {for} now.\n\n"
            "{latest_text}\n\n"
            "{next_update_text}"
        ),
        digest_line="{devices_title}: still in the outage, for {for}",
        sms="Fleetwatch: the outage affecting {devices_title} is still going on ({for}).",
        line="Still going on, for {for} now. {latest_text}",
    ),
    "update_promise_missed": Template(
        title="Update promised by {promised_utc} not posted: {summary}",
        body=(
            "Customers were told the next update on incident {incident_id} ({summary}) would "
            "come by {promised_utc}; none has been posted since {last_update_utc}.\n\n"
            "Post one: POST /api/v1/incidents/{incident_id}/updates"
        ),
        digest_line="update promised by {promised_utc} not posted: {summary}",
        sms="Fleetwatch: update on incident {incident_id} promised by {promised_utc} not posted",
        line="Customers were promised an update by {promised_utc}: post one now.",
        about="notice",
    ),
    # -- campaigns: update and recall notices to owners, and the firmware team's -----------
    "ota_scheduled": Template(
        title="A software update for your {device_kind} {device_name}",
        body=(
            "Hello {customer_name},\n\n"
            "We will update your {device_kind} {device_name} ({model_name}, {identity}) to "
            "firmware {target_version} {when_text}. It restarts once during the update and "
            "is back within a few minutes.\n\n"
            "What to do: nothing; keep it powered and connected."
        ),
        digest_line="{device_name} ({model_name}, {identity}): update to {target_version} "
        "{when_text}",
        about="notice",
        sms="Fleetwatch: your {device_kind} {device_name} updates to {target_version} {when_text}.",
        line=(
            "Update to firmware {target_version} {when_text}; it restarts once. Keep it powered."
        ),
    ),
    "ota_succeeded": Template(
        title="Your {device_kind} {device_name} is up to date",
        body=(
            "Hello {customer_name},\n\n"
            "Your {device_kind} {device_name} ({model_name}, {identity}) now runs firmware "
            "{target_version}, since {since_local}.\n\n"
            "Nothing more to do."
        ),
        digest_line="{device_name} ({model_name}, {identity}) updated to {target_version}",
        about="notice",
        sms="Fleetwatch: your {device_kind} {device_name} now runs firmware {target_version}.",
        line=("Now on firmware {target_version}, since {since_local}. Nothing more to do."),
    ),
    "ota_failed": Template(
        title="The update of your {device_kind} {device_name} did not work",
        body=(
            "Hello {customer_name},\n\n"
            "We could not update your {device_kind} {device_name} ({model_name}, {identity}) "
            "to firmware {target_version}: {failure_text}.\n\n"
            "What to do: {next_steps}"
        ),
        digest_line="{device_name} ({model_name}, {identity}): update failed, {failure_text}",
        about="notice",
        sms=(
            "Fleetwatch: the update of your {device_kind} {device_name} to "
            "{target_version} did not work."
        ),
        line=("Update to {target_version} failed: {failure_text}. What to do: {next_steps}"),
    ),
    "recall_notice": Template(
        title="Safety recall: your {device_kind} {device_name}",
        body=(
            "Hello {customer_name},\n\n"
            "{campaign_name} concerns your {device_kind} {device_name} ({model_name}, "
            "{identity}).\n\n"
            "{safety_text}\n\n"
            "What to do: {instructions}\n\n"
            "Please confirm that you have read this notice: {ack_url}"
        ),
        digest_line="{device_name} ({model_name}, {identity}): {campaign_name}, confirm at "
        "{ack_url}",
        about="notice",
        # The confirmation link (ack_url) is the message's link: after the SMS, the push's
        # click action, the email's button.
        sms="Fleetwatch safety recall of your {device_kind} {device_name}. Please read and "
        "confirm:",
        line="{campaign_name}. {safety_text} Please read and confirm.",
        link_field="ack_url",
        link_label="Read and confirm",
    ),
    "recall_repeat": Template(
        title="Reminder, safety recall: your {device_kind} {device_name}",
        body=(
            "Hello {customer_name},\n\n"
            "We wrote to you on {notified_local} about {campaign_name}, which concerns your "
            "{device_kind} {device_name} ({model_name}, {identity}), and have not heard "
            "back.\n\n"
            "{safety_text}\n\n"
            "What to do: {instructions}\n\n"
            "Please confirm that you have read this notice: {ack_url}"
        ),
        digest_line="{device_name} ({model_name}, {identity}): {campaign_name}, not yet "
        "confirmed: {ack_url}",
        about="notice",
        sms="Reminder, safety recall of your {device_kind} {device_name}. Please read and confirm:",
        line="Not yet confirmed: {campaign_name}. {safety_text} Please read and confirm.",
        link_field="ack_url",
        link_label="Read and confirm",
    ),
    # -- a safety recall with its remedy (campaigns/remedy.py) ------------------------------
    "safety_recall": Template(
        title="Safety recall: your {device_kind} {device_name} ({identity})",
        body=(
            "Hello {customer_name},\n\n"
            "{campaign_name} concerns your {device_kind} {device_name}: {model_name}, "
            "{identity}.\n\n"
            "Meanwhile: {safety_text}\n\n"
            "The remedy: {remedy_text}\n\n"
            "Please confirm that you have read this notice: {ack_url}"
        ),
        digest_line="{device_name} ({model_name}, {identity}): {campaign_name}, confirm at "
        "{ack_url}",
        about="notice",
        sms="Safety recall of your {device_kind} {device_name}, {identity}. {safety_short} "
        "Read and confirm:",
        line="{campaign_name}: your {model_name}, {identity}. {safety_short} Remedy: "
        "{remedy_short}. Please read and confirm.",
        link_field="ack_url",
        link_label="Read and confirm",
        alone=True,
    ),
    "recall_no_action_needed": Template(
        title="No action needed: your {device_kind} {device_name} already has the fix",
        body=(
            "Hello {customer_name},\n\n"
            "{campaign_name}: no action needed. Your {device_kind} {identity} already has "
            "the fix (software {installed_version}).\n\n"
            "It is your {device_name} ({model_name}): nothing to do for it."
        ),
        digest_line="{device_name} ({model_name}, {identity}): already has the fix "
        "(software {installed_version})",
        about="notice",
        sms="Fleetwatch: no action needed: your {device_kind} {device_name}, {identity} "
        "already has the fix (software {installed_version}).",
        line="No action needed: your {device_kind} {identity} already has the fix (software "
        "{installed_version}).",
    ),
    "recall_remedied": Template(
        title="Recall done: your {device_kind} {device_name} has the fix",
        body=(
            "Hello {customer_name},\n\n"
            "Your {device_kind} {device_name} ({model_name}, {identity}) now runs software "
            "{installed_version}, which has the fix for {campaign_name}.\n\n"
            "The recall is closed for it: nothing more to do."
        ),
        digest_line="{device_name} ({model_name}, {identity}): fixed, software {installed_version}",
        about="notice",
        sms="Fleetwatch: recall done. Your {device_kind} {device_name}, {identity} now runs "
        "software {installed_version} with the fix.",
        line="Your {device_kind} {identity} now runs software {installed_version} with the "
        "fix. The recall is closed for it.",
    ),
    "recall_remedy_failed": Template(
        title="The recall update of your {device_kind} {device_name} did not work",
        body=(
            "Hello {customer_name},\n\n"
            "We could not install the fix for {campaign_name} on your {device_kind} "
            "{device_name} ({model_name}, {identity}): {failure_text}. It still runs its "
            "previous software.\n\n"
            "Meanwhile: {safety_text}\n\n"
            "What happens next: {next_steps}\n\n"
            "The recall notice, to read again or confirm: {ack_url}"
        ),
        digest_line="{device_name} ({model_name}, {identity}): recall update failed, "
        "{failure_text}",
        about="notice",
        sms="Recall update of your {device_kind} {device_name}, {identity} failed. "
        "{safety_short} Next steps:",
        line="Recall update of your {device_kind} {identity} failed: {failure_text}. Next: "
        "{next_steps}",
        link_field="ack_url",
        link_label="See the recall",
        alone=True,
    ),
    "recall_follow_up": Template(
        title="Reminder {follow_up_number}, safety recall: your {device_kind} {device_name} "
        "({identity})",
        body=(
            "Hello {customer_name},\n\n"
            "We wrote to you on {notified_local} about {campaign_name}, which concerns your "
            "{device_kind} {device_name} ({model_name}, {identity}). It does not have the fix "
            "yet.\n\n"
            "Meanwhile: {safety_text}\n\n"
            "The remedy: {remedy_text}\n\n"
            "Please confirm that you have read this notice: {ack_url}"
        ),
        digest_line="{device_name} ({model_name}, {identity}): {campaign_name}, not fixed "
        "yet: {ack_url}",
        about="notice",
        sms="Recall reminder: your {device_kind} {device_name}, {identity} is not fixed yet. "
        "{safety_short} Read:",
        line="Not fixed yet: your {model_name}, {identity}. {safety_short} Remedy: {remedy_short}.",
        link_field="ack_url",
        link_label="Read and confirm",
        alone=True,
    ),
    "campaign_halted": Template(
        title="Campaign halted: {campaign_name}",
        body=(
            "Campaign {campaign_id} ({campaign_name}, firmware {target_version}) halted itself "
            "in wave {wave}: {reason}.\n\n"
            "So far {succeeded} devices updated and {failed} failed "
            "({failures}). No more commands go out until someone decides.\n\n"
            "Resume with: fleetwatch campaigns resume {campaign_id}\n"
            "Or cancel with: fleetwatch campaigns cancel {campaign_id}"
        ),
        digest_line="campaign {campaign_id} halted: {reason}",
        sms="Fleetwatch: campaign {campaign_id} halted in wave {wave}: {reason}",
        line="Halted in wave {wave}: {reason}. {succeeded} updated, {failed} failed.",
    ),
    "campaign_completed": Template(
        title="Campaign completed: {campaign_name}",
        body=(
            "Campaign {campaign_id} ({campaign_name}) completed all {waves} waves: "
            "{succeeded} devices updated, {failed} failed, {skipped} skipped (offline "
            "throughout)."
        ),
        digest_line="campaign {campaign_id} completed",
        about="notice",
        sms="Fleetwatch: campaign {campaign_id} completed: {succeeded} updated, {failed} failed.",
        line=("All {waves} waves done: {succeeded} updated, {failed} failed, {skipped} skipped."),
    ),
    # -- the customer's page (portal/): asked for, personal, each a credential --------------
    "signin_link": Template(
        title="Your Fleetwatch sign-in link",
        body=(
            "Hello {customer_name},\n\n"
            "Sign in to Fleetwatch with this link: {signin_url}\n\n"
            "It works once, within {minutes} minutes.\n\n"
            "If you did not ask for it, ignore this message: nobody can sign in without it."
        ),
        digest_line="your sign-in link: {signin_url}",
        about="notice",
        sms="Your Fleetwatch sign-in link, works once within {minutes} min:",
        line="Works once, within {minutes} minutes. Ignore it if you did not ask for it.",
        link_field="signin_url",
        link_label="Sign in",
    ),
    "channel_code": Template(
        title="Your Fleetwatch code: {code}",
        body=(
            "Hello {customer_name},\n\n"
            "Your code to confirm this address for Fleetwatch messages is {code}. It works "
            "within {minutes} minutes.\n\n"
            "If you did not ask for it, ignore this message: nothing is sent here without it."
        ),
        digest_line="your code: {code}",
        about="notice",
        sms="Your Fleetwatch code is {code} (valid {minutes} min). Ignore it if you did not ask.",
        line="Your code is {code}, valid {minutes} minutes.",
        # A code is typed, not followed: no link to the page in it.
        link_field="no_link",
    ),
}

# An owner's message still waiting about one of these is cancelled once its incident is over.
PROBLEM_TEMPLATES = frozenset(name for name, t in TEMPLATES.items() if t.about == "problem")
# What a group incident (a fleet outage) holds back for its members' owners.
HELD_IN_OUTAGE = frozenset(name for name, t in TEMPLATES.items() if t.in_outage)
# Messages a customer asked for that carry a credential (a sign-in link, a channel's code):
# sent alone (never in a digest), at once (no quiet hours, outside the hourly limit: they
# have limits of their own, portal/), and once sent or given up, their context loses these
# fields (alerts/dispatcher.py): the stored outbox keeps no usable credential.
PERSONAL_TEMPLATES = frozenset({"signin_link", "channel_code"})
CREDENTIAL_FIELDS = ("signin_url", "code")

DIGEST_TITLES = {
    "device_offline": "{count} of your devices are offline",
    "device_back_online": "{count} of your devices are back online",
    "device_offline_known_outage": "We know about an outage affecting {count} of your devices",
    "ota_scheduled": "Software updates for {count} of your devices",
    "ota_succeeded": "{count} of your devices are up to date",
    "recall_notice": "Safety recall: {count} of your devices",
    "recall_repeat": "Reminder, safety recall: {count} of your devices",
    "safety_recall": "Safety recall: {count} of your devices",
    "recall_follow_up": "Reminder, safety recall: {count} of your devices",
    "recall_no_action_needed": "No action needed: {count} of your devices already have the fix",
    "recall_remedied": "Recall done: {count} of your devices have the fix",
}
# Messages that ask nothing of the customer.
NOTHING_TO_DO = frozenset(
    {
        "device_back_online",
        "device_offline_known_outage",
        "ota_scheduled",
        "ota_succeeded",
        "recall_no_action_needed",
        "recall_remedied",
    }
)
DIGEST_TITLE_MIXED = "{count} of your devices changed status"


class _Strict(dict):
    def __missing__(self, key):
        raise KeyError(f"template field {key!r} missing from the notification's context")


def render(template: str, context: dict) -> tuple[str, str]:
    """(title, body) of one notification."""
    tpl = TEMPLATES[template]
    ctx = _Strict(context)
    return tpl.title.format_map(ctx), tpl.body.format_map(ctx)


def render_digest(items: list[tuple[str, dict]]) -> tuple[str, str]:
    """(title, body) of several notifications to one channel sent as one message."""
    kinds = {template for template, _ in items}
    title = (
        DIGEST_TITLES.get(next(iter(kinds)), DIGEST_TITLE_MIXED)
        if len(kinds) == 1
        else DIGEST_TITLE_MIXED
    ).format(count=len(items))
    greeting = items[0][1].get("customer_name")
    lines = [
        "- " + TEMPLATES[template].digest_line.format_map(_Strict(ctx)) for template, ctx in items
    ]
    advice = sorted(
        {ctx["what_to_do"] for t, ctx in items if t not in NOTHING_TO_DO and "what_to_do" in ctx}
    )
    body = (f"Hello {greeting},\n\n" if greeting else "") + "\n".join(lines)
    if advice:
        body += "\n\nWhat to do:\n" + "\n".join(f"- {a}" for a in advice)
    return title, body
