"""Every simulated device's connection on one selector: pacing, reconnects and socket I/O.

selector (epoll) --readable--> client.loop_read()
                 --writable--> client.loop_write()
connect queue ---------------> client.reconnect(), paced by ConnectPacer
retry heap ------------------> back into the queue once a backoff runs out
sweep -----------------------> client.loop_misc() (keepalive pings), a slice per tick

Given `on_command`, every device subscribes to its cmd topic on every connect, then
publishes its birth message (so a service seeing `online` may send a command at once).
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import logging
import math
import random
import selectors
import time
from collections.abc import Callable, Sequence

from contract.messages import OFFLINE, ONLINE
from devices.simulator.links import (
    DeviceLink,
    LinkState,
    SocketWatcher,
    acked,
    close_abruptly,
    disconnect_now,
    publish_status,
    subscribe_commands,
)
from devices.simulator.pacing import ConnectPacer, jittered, next_backoff
from devices.simulator.scenarios import Link
from devices.simulator.stats import Counters

log = logging.getLogger(__name__)

# Each client's loop_misc runs once per sweep; its pings fall due every keepalive.
MISC_SWEEP_S = 2.0
# A clean disconnect waits for outstanding PUBACKs at most this long. Closing with a PUBACK
# unread makes the kernel send RST, and the broker then loses our DISCONNECT and
# publishes the will: the opposite of what a clean disconnect is for.
CLEAN_DISCONNECT_WAIT_S = 2.0


class Connections:
    """Owns the sockets of `links`; tells `on_first_connect` when a device first gets online,
    `on_reconnect` when it gets online again, and `on_command` what arrives on its cmd topic.
    """

    def __init__(
        self,
        links: Sequence[DeviceLink],
        counters: Counters,
        *,
        on_first_connect: Callable[[DeviceLink], None],
        on_reconnect: Callable[[DeviceLink], None] | None = None,
        on_command: Callable[[DeviceLink, bytes], None] | None = None,
    ) -> None:
        self.links = list(links)
        self.counters = counters
        self.on_first_connect = on_first_connect
        self.on_reconnect = on_reconnect
        self.on_command = on_command
        self.selector = selectors.DefaultSelector()
        self.watcher = SocketWatcher(self.selector)
        self.stopping = False
        self._queue: collections.deque[DeviceLink] = collections.deque(self.links)
        self._retries: list[tuple[float, int, DeviceLink]] = []
        self._tiebreak = itertools.count()
        self._jitter = random.Random()
        now = time.monotonic()
        self._pacer = ConnectPacer(now)
        self._misc_cursor = 0
        self._misc_at = now
        for link in self.links:
            client = link.client
            client.on_connect = self._on_connect
            client.on_disconnect = self._on_disconnect
            client.on_publish = self._on_publish
            client.on_subscribe = self._on_subscribe
            client.on_message = self._on_message
            self.watcher.attach(client)

    def wait_s(self, longest: float) -> float:
        """How long the loop may block in `serve` before `tick` has work."""
        if self._queue:
            return min(longest, self._pacer.wait_s())
        if self._retries:
            return min(longest, max(0.0, self._retries[0][0] - time.monotonic()))
        return longest

    def serve(self, wait_s: float) -> None:
        """Wait up to `wait_s` for socket events and let paho handle them."""
        for key, mask in self.selector.select(wait_s):
            self._serve_socket(key.data, mask)

    def tick(self, mono: float) -> None:
        """Requeue links whose backoff ran out, start paced connects, send due keepalives."""
        while self._retries and self._retries[0][0] <= mono:
            _, _, link = heapq.heappop(self._retries)
            if link.state is LinkState.WAITING and not link.wanted_down:
                self.connect_later(link)
        while self._queue and self._pacer.take(mono, pending=self.counters.connecting):
            link = self._queue.popleft()
            if link.state is LinkState.QUEUED and not link.wanted_down and not self.stopping:
                self._connect(link)
        self._sweep_misc(mono)

    def connect_later(self, link: DeviceLink) -> None:
        """Queue a connect; it starts when the pacer allows."""
        link.state = LinkState.QUEUED
        self._queue.append(link)

    def change(self, link: DeviceLink, change: Link) -> None:
        """Play a fault's connection change on one link."""
        if change is Link.CONNECT:
            self.bring_up(link)
            return
        self.counters.fault_disconnects += 1
        self.take_down(link, change)

    def bring_up(self, link: DeviceLink) -> None:
        """Connect again a link taken down on purpose (a fault ending, a reboot over)."""
        link.wanted_down = False
        if link.state is LinkState.DOWN:
            self.connect_later(link)

    def take_down(self, link: DeviceLink, change: Link) -> None:
        """Take a link down on purpose (a fault, a reboot): cleanly or abruptly; no reconnect."""
        link.wanted_down = True
        if link.state in (LinkState.CONNECTED, LinkState.CONNECTING):
            if change is Link.CLEAN_DISCONNECT:
                self._disconnect_cleanly(link)
            else:
                close_abruptly(link)
        else:
            link.state = LinkState.DOWN

    def close_all(self, grace_s: float, wait_s: float) -> None:
        """Connected devices publish a retained `offline` and disconnect; then close the rest."""
        self.stopping = True
        self._queue.clear()
        for link in self.links:
            try:
                if link.state is LinkState.CONNECTED:
                    publish_status(link, OFFLINE)
                    self._disconnect_cleanly(link)
                elif link.client.socket() is not None:
                    disconnect_now(link)
            except Exception as exc:
                self._trouble(link, "shutdown", exc)
        deadline = time.monotonic() + grace_s
        while self.selector.get_map() and time.monotonic() < deadline:
            self.serve(wait_s)
        left = list(self.selector.get_map().values())
        if left:
            log.warning("%d connections did not close in time; closing them", len(left))
        for key in left:
            self.watcher.forget(key.fileobj)
            key.fileobj.close()
        self.selector.close()
        self.counters.connected = self.counters.connecting = 0

    # -- inside ----------------------------------------------------------------------------

    def _serve_socket(self, link: DeviceLink, mask: int) -> None:
        client = link.client
        try:
            if mask & selectors.EVENT_READ:
                client.loop_read()
            if mask & selectors.EVENT_WRITE and client.socket() is not None:
                client.loop_write()
        except Exception as exc:
            self._trouble(link, "socket I/O", exc)

    def _disconnect_cleanly(self, link: DeviceLink) -> None:
        """DISCONNECT once nothing is owed by the broker (see CLEAN_DISCONNECT_WAIT_S)."""
        link.closing_since = time.monotonic()
        if link.unacked == 0 and link.state is LinkState.CONNECTED:
            disconnect_now(link)

    def _connect(self, link: DeviceLink) -> None:
        try:
            link.client.reconnect()  # a blocking TCP connect, short on a nearby broker
        except OSError as exc:
            self.counters.connect_failures += 1
            log.debug("%s: connect failed: %s", link.device.device_id, exc)
            self._retry_later(link)
            return
        except Exception as exc:
            self._trouble(link, "connect", exc)
            return
        link.state = LinkState.CONNECTING
        self.counters.connecting += 1

    def _sweep_misc(self, mono: float) -> None:
        """loop_misc for a slice of the clients, so each gets it once per MISC_SWEEP_S."""
        links = self.links
        share = min(len(links), math.ceil(len(links) * (mono - self._misc_at) / MISC_SWEEP_S))
        if share <= 0:
            return
        self._misc_at = mono
        for _ in range(share):
            link = links[self._misc_cursor]
            self._misc_cursor = (self._misc_cursor + 1) % len(links)
            if link.state not in (LinkState.CONNECTED, LinkState.CONNECTING):
                continue
            try:
                closing = link.closing_since
                if closing is not None and mono - closing > CLEAN_DISCONNECT_WAIT_S:
                    disconnect_now(link)  # acks overdue: disconnect anyway
                link.client.loop_misc()
            except Exception as exc:
                self._trouble(link, "keepalive", exc)

    def _retry_later(self, link: DeviceLink) -> None:
        link.backoff_s = next_backoff(link.backoff_s)
        link.state = LinkState.WAITING
        due = time.monotonic() + jittered(link.backoff_s, self._jitter)
        heapq.heappush(self._retries, (due, next(self._tiebreak), link))

    def _trouble(self, link: DeviceLink, where: str, exc: Exception) -> None:
        """One device misbehaved: log it, drop its socket, and let it reconnect later."""
        self.counters.errors += 1
        log.error("%s: unexpected error in %s", link.device.device_id, where, exc_info=exc)
        sock = link.client.socket()
        if sock is not None:
            self.watcher.forget(sock)
            with contextlib.suppress(OSError):
                sock.close()
        self._leave_state(link)
        if link.wanted_down or self.stopping:
            link.state = LinkState.DOWN
        else:
            self._retry_later(link)

    def _leave_state(self, link: DeviceLink) -> None:
        """Undo the connected/connecting count of the state the link is leaving."""
        if link.state is LinkState.CONNECTED:
            self.counters.connected -= 1
        elif link.state is LinkState.CONNECTING:
            self.counters.connecting -= 1
        link.state = LinkState.WAITING

    # -- paho callbacks, run inside loop_read/loop_write/loop_misc -------------------------

    def _on_connect(self, client, link: DeviceLink, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("%s: connection refused: %s", link.device.device_id, reason_code)
            self.counters.connect_failures += 1
            return  # paho closes the socket next; on_disconnect schedules the retry
        self._leave_state(link)
        link.state = LinkState.CONNECTED
        link.backoff_s = 0.0
        self.counters.connected += 1
        self.counters.connects += 1
        if not link.ever_connected:
            link.ever_connected = True
            self.on_first_connect(link)
        elif self.on_reconnect is not None:
            self.on_reconnect(link)
        if link.closing_since is None:
            if self.on_command is not None:
                subscribe_commands(link)
            publish_status(link, ONLINE)
        elif link.unacked == 0:
            disconnect_now(link)  # told to leave while it was still connecting

    def _on_disconnect(self, client, link: DeviceLink, flags, reason_code, properties) -> None:
        self._leave_state(link)
        link.closing_since = None
        if link.wanted_down or self.stopping:
            link.state = LinkState.DOWN
            return
        self.counters.connections_lost += 1
        log.debug("%s: connection lost: %s", link.device.device_id, reason_code)
        self._retry_later(link)

    def _on_subscribe(self, client, link: DeviceLink, mid, reason_codes, properties) -> None:
        if any(code.is_failure for code in reason_codes):
            self.counters.subscribe_failures += 1
            log.warning("%s: cmd subscription refused: %s", link.device.device_id, reason_codes)
        else:
            self.counters.command_subscriptions += 1

    def _on_message(self, client, link: DeviceLink, message) -> None:
        # Wrapped: an exception here would end up dropping the device's connection.
        if self.on_command is None or message.topic != link.command_topic:
            return
        try:
            self.on_command(link, message.payload)
        except Exception:
            self.counters.errors += 1
            log.exception("%s: unexpected error handling a command", link.device.device_id)

    def _on_publish(self, client, link, mid, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.counters.publish_failures += 1
        else:
            self.counters.publishes_acked += 1
        acked(link)
