"""The simulator's counters: written by its loop thread, read as a snapshot from any thread."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class SimulatorStats:
    """A snapshot of the counters; totals count since the simulator started."""

    devices: int = 0
    connected: int = 0  # holding a connection now
    connecting: int = 0  # CONNECT sent, CONNACK not yet received
    connects: int = 0  # CONNACKs accepted, reconnects included
    connect_failures: int = 0  # refused TCP connects, failed CONNACKs
    connections_lost: int = 0  # drops nobody asked for (broker restart, socket error)
    fault_disconnects: int = 0  # clean disconnects and abrupt closes played by scenarios
    heartbeats_sent: int = 0
    heartbeats_dropped: int = 0  # came due while the device had no connection
    publishes_acked: int = 0  # PUBACKs for heartbeats, birth and update messages
    publish_failures: int = 0
    command_subscriptions: int = 0  # SUBACKs for cmd topics, one per connect
    subscribe_failures: int = 0  # cmd subscriptions the broker refused
    commands_received: int = 0  # ota_update commands answered (busy and refused included)
    commands_ignored: int = 0  # not JSON, unknown type, malformed, or a repeated command_id
    ota_messages_sent: int = 0
    ota_messages_dropped: int = 0  # came due while the device had no connection
    reboots: int = 0  # update reboots begun (a clean disconnect each)
    bricked: int = 0  # of those, devices that never come back
    errors: int = 0  # unexpected exceptions caught around one device
    all_connected_s: float | None = None  # start until every device had connected once
    running: bool = False


class Counters:
    """Mutable twin of SimulatorStats; ints updated by one thread read safely by others."""

    def __init__(self) -> None:
        for f in fields(SimulatorStats):
            setattr(self, f.name, f.default)

    def snapshot(self) -> SimulatorStats:
        """A frozen copy (fields read one by one; close enough for monitoring)."""
        return SimulatorStats(**{f.name: getattr(self, f.name) for f in fields(SimulatorStats)})
