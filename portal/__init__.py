"""The customer's side: the links in their messages and what they may do from them
(later also their sign-in sessions).

    links     message links: minted per message as the dispatcher claims it, kept as hashes,
              opened by token (who, what about, until when)
    actions   what an owner may do about a device or an incident ("I know", snooze, stop
              watching, confirm a recall): when each is available, and doing it
    page      what a link's page shows: the device, its incident with the owner's timeline,
              the recall, the actions available now

Writes go through their owners: incidents/ for incidents and timelines, monitor/ for a
device's status, alerts/ for silences and the outbox, campaigns/ for recalls; this package
owns only `message_links` and `message_link_subjects`.
"""
