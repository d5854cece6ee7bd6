"""Incidents: the one owner of the incident lifecycle and its timeline.

    open       one open incident per device and kind, or per group and kind (unique indexes)
    record     a line on an incident's timeline (`incident_events`)
    acknowledge, comment  (a note is staff's own unless marked for the customer);
               acknowledge_by_owner: the owner's "I know" (no more reminders)
    visibility what an owner may read of each timeline line, and its words (pure)
    resolve    one behaviour for every caller (monitor, health rules, staff, campaigns):
               the owner's messages about the problem still waiting are cancelled (moot);
               a resolved group incident releases what it held for its open members;
               the timeline says who, why, and how many were cancelled or released
    attach     a device incident joins a group incident (a fleet outage): its owner's alert
               is held; detach lets it go again
    tell       a lasting group incident turns what it holds into "we know about it"
    update     staff's update to customers: a line on the incident and on a group's open
               members; the latest update and the promise of the next (incidents/updates.py)

Nothing outside this package writes `incidents` or `incident_events`
(tests/test_architecture.py holds that). Messages are not sent from here: callers record
notices (alerts/notices.py) and the outbox's waiting rows are changed through alerts/outbox.py.
"""

from incidents.lifecycle import (
    acknowledge,
    acknowledge_by_owner,
    attach,
    comment,
    detach,
    find_open,
    find_open_group,
    mark_escalated,
    mark_reminded,
    open_device_incidents,
    open_group_incident,
    open_group_incidents,
    resolve,
    tell_members,
)
from incidents.model import DeviceProblem, GroupProblem, Opened, Resolved
from incidents.timeline import record_events
from incidents.updates import PostedUpdate, mark_promise_missed, post_update

__all__ = [
    "DeviceProblem",
    "GroupProblem",
    "Opened",
    "PostedUpdate",
    "Resolved",
    "acknowledge",
    "acknowledge_by_owner",
    "attach",
    "comment",
    "detach",
    "find_open",
    "find_open_group",
    "mark_escalated",
    "mark_promise_missed",
    "mark_reminded",
    "open_device_incidents",
    "open_group_incident",
    "open_group_incidents",
    "post_update",
    "record_events",
    "resolve",
    "tell_members",
]
