"""The embedded broker takes any password for any user, so it listens on loopback only.

Started as `fleetwatch demo`, `serve` and `ingest` start it (its own process), then looked
at from outside: what the kernel says it listens on, and a connection to each of this
machine's other addresses.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
from pathlib import Path

import pytest

from fleetwatch.embedded import EmbeddedBroker, _stop_child, start_broker_process
from harness.ports import free_port, port_open

SIOCGIFADDR = 0x8915  # Linux: an interface's IPv4 address


def this_machines_other_addresses() -> list[str]:
    """This machine's IPv4 addresses that are not loopback (Linux), or none."""
    found = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            with contextlib.suppress(OSError):
                answer = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, request)
                found.add(socket.inet_ntoa(answer[20:24]))
    return sorted(a for a in found if not ipaddress.ip_address(a).is_loopback)


def listening_addresses(port: int) -> list[str]:
    """The local addresses of the sockets listening on `port`, from /proc/net/tcp(6)."""
    addresses = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            host, hexport = local.split(":")
            if state != "0A" or int(hexport, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(host)
            # The kernel prints each 32-bit word in host byte order (little-endian here).
            words = [raw[i : i + 4][::-1] for i in range(0, width // 2, 4)]
            addresses.append(str(ipaddress.ip_address(b"".join(words))))
    return addresses


def test_the_embedded_broker_answers_on_loopback_and_nowhere_else():
    port = free_port()
    child = start_broker_process(port)
    try:
        assert port_open(port, host="127.0.0.1")
        listening = listening_addresses(port)
        if Path("/proc/net/tcp").exists():
            assert listening == ["127.0.0.1"]
        for address in this_machines_other_addresses():
            assert not port_open(port, host=address, timeout_s=1.0), address
    finally:
        _stop_child(child)


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "::", "192.0.2.10", "localhost", "example.com"],  # noqa: S104
)
def test_the_embedded_broker_refuses_to_listen_beyond_loopback(host):
    with pytest.raises(ValueError, match="loopback only"):
        EmbeddedBroker(free_port(), host=host)
