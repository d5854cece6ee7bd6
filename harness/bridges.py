"""An edge/core Mosquitto topology on 127.0.0.1: one core broker that the services use, and
edge brokers that devices connect to, each bridging the device topics to the core.

    devices ──> edge-1 ──┐  bridge: <prefix>/+/heartbeat|status|ota  out, QoS 1
    devices ──> edge-2 ──┼─> core <── ingest, campaign runner
    devices ──> edge-N ──┘  bridge: <prefix>/+/cmd  in, QoS 1

Each bridge is a persistent session on both ends (`cleansession false`, and the local end
too): while the core is down, an edge queues what its devices send (up to its
`max_queued_messages`) and forwards it when the core is back; while an edge is down, the
core queues the commands for it. deploy/mosquitto/edge.conf is the production form of
`bridge_lines`; deploy/README.md says when to use bridges and when a clustered broker.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from contract.topics import bridge_state_topic
from harness.mosquitto import Mosquitto

# The device topics that travel to the core, and the one that travels back.
UPSTREAM = ("heartbeat", "status", "ota")
DOWNSTREAM = ("cmd",)


def bridge_lines(
    name: str,
    core: str,
    prefix: str,
    *,
    username: str | None = None,
    password: str | None = None,
    restart_timeout: tuple[int, int] = (1, 5),
) -> list[str]:
    """The `connection` block of an edge's config: device topics out to the core at QoS 1,
    commands in, on a persistent session at both ends. `core` is host:port; `username`
    is the bridge's login on the core (its client id there too, with
    use_username_as_clientid)."""
    remote_id = username or f"bridge-{name}"
    lines = [
        f"connection {name}",
        f"address {core}",
        *(f"topic {prefix}/+/{kind} out 1" for kind in UPSTREAM),
        *(f"topic {prefix}/+/{kind} in 1" for kind in DOWNSTREAM),
        "bridge_protocol_version mqttv50",
        # Keep the bridge's session on the core (commands queued for this edge) and its
        # session here (device messages queued for the core) across either one's restart.
        "cleansession false",
        "local_cleansession false",
        f"remote_clientid {remote_id}",
        f"local_clientid {name}-to-core",
        # Reconnect quickly, backing off to a cap: the core's queue for its bridges and
        # the ingest's watermark both wait for this.
        f"restart_timeout {restart_timeout[0]} {restart_timeout[1]}",
        # The bridge's state on the core, where the ingest hears an edge go away and come
        # back (contract.topics.bridge_state_topic), as deploy/mosquitto/bridge.conf.example.
        "notifications true",
        f"notification_topic {bridge_state_topic(prefix, remote_id)}",
    ]
    if username is not None:
        lines.append(f"remote_username {username}")
    if password is not None:
        lines.append(f"remote_password {password}")
    return lines


class BridgedBrokers:
    """A core Mosquitto and `edges` edge Mosquittos bridged to it, each with its own work
    directory under `workdir`. `start()` starts the core first (its port is then final)
    and the edges after it; `core` and `edges[i]` restart on their own ports."""

    def __init__(
        self,
        workdir: Path,
        *,
        edges: int,
        prefix: str,
        core_listeners: int = 1,
        edge_listeners: int = 1,
        persistence: bool = True,
        max_queued_messages: int | None = 10_000_000,
        max_inflight_messages: int | None = 10_000,
        core_extra: Sequence[str] = (),
        edge_extra: Sequence[str] = (),
        edge_anonymous: bool | None = True,
        restart_timeout: tuple[int, int] = (1, 5),
        raise_fd_limit: bool = False,
        log_types: Sequence[str] = ("error", "warning", "notice"),
    ) -> None:
        if edges < 1:
            raise ValueError("an edge/core topology has at least one edge")
        self.workdir = workdir
        self.prefix = prefix
        self.edge_count = edges
        self.common = {
            "persistence": persistence,
            "max_queued_messages": max_queued_messages,
            "max_inflight_messages": max_inflight_messages,
            "raise_fd_limit": raise_fd_limit,
            "log_types": log_types,
        }
        self.edge_listeners = edge_listeners
        self.edge_extra = list(edge_extra)
        # None: the edge's `extra` says (allow_anonymous false with a password file and an
        # ACL, as deploy/mosquitto/edge.conf).
        self.edge_anonymous = edge_anonymous
        self.restart_timeout = restart_timeout
        self.core = Mosquitto(
            workdir / "core", listeners=core_listeners, extra=core_extra, **self.common
        )
        self.edges: list[Mosquitto] = []

    def start(self) -> BridgedBrokers:
        self.core.start()
        if not self.edges:
            for i in range(self.edge_count):
                name = f"edge-{i + 1}"
                bridge = bridge_lines(
                    name,
                    f"127.0.0.1:{self.core.port}",
                    self.prefix,
                    restart_timeout=self.restart_timeout,
                )
                self.edges.append(
                    Mosquitto(
                        self.workdir / name,
                        listeners=self.edge_listeners,
                        anonymous=self.edge_anonymous,
                        extra=[*self.edge_extra, *bridge],
                        **self.common,
                    )
                )
        for edge in self.edges:
            edge.start()
        return self

    def stop(self) -> None:
        """Edges first, so that what they hold is saved while the core still takes it."""
        for edge in self.edges:
            edge.stop()
        self.core.stop()

    def close(self) -> None:
        for edge in self.edges:
            edge.close()
        self.core.close()

    def __enter__(self) -> BridgedBrokers:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
