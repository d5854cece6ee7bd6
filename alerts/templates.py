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
}

DEVICE_KIND_NAMES = {
    "thermostat": "thermostat",
    "alarm_panel": "alarm panel",
    "camera": "camera",
    "ev_charger": "EV charger",
    "car": "car",
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
    ),
    "system_blind_spot_resolved": Template(
        title="Fleetwatch sees the fleet again",
        body=(
            "Messages are arriving again at {back_utc}, after {duration} without any.\n\n"
            "Offline decisions wait {grace} so that devices can reconnect first."
        ),
        digest_line="sight regained after {duration}",
        about="recovery",
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
    ),
    "fleet_outage_resolved": Template(
        title="Fleet outage over: {group}",
        body=(
            "{summary}\n\nOver after {duration}: {still} of {affected} devices are still "
            "offline, and their owners' alerts go out now."
        ),
        digest_line="fleet outage over: {group}",
        about="recovery",
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
    ),
    "incident_escalated": Template(
        title="Not acknowledged after {waited}: {summary}",
        body=(
            "Incident {incident_id} ({summary}) opened at {opened} and nobody has "
            "acknowledged it for {waited}.\n\n"
            "Acknowledge it with: fleetwatch incidents ack {incident_id} --by <your name>"
        ),
        digest_line="not acknowledged after {waited}: {summary}",
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
}
# Messages that ask nothing of the customer.
NOTHING_TO_DO = frozenset(
    {"device_back_online", "device_offline_known_outage", "ota_scheduled", "ota_succeeded"}
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
