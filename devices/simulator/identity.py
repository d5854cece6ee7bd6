"""Believable owners, places, serial numbers and VINs for simulated devices."""

from __future__ import annotations

import random

from devices.simulator.device import Owner

# (region, weight, IANA timezones a customer there may live in)
REGIONS: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    (
        "eu-west",
        0.30,
        (
            "Europe/London",
            "Europe/Dublin",
            "Europe/Paris",
            "Europe/Amsterdam",
            "Europe/Madrid",
            "Europe/Lisbon",
        ),
    ),
    (
        "eu-central",
        0.25,
        ("Europe/Berlin", "Europe/Vienna", "Europe/Zurich", "Europe/Warsaw", "Europe/Prague"),
    ),
    ("us-east", 0.25, ("America/New_York", "America/Toronto", "America/Chicago")),
    ("us-west", 0.15, ("America/Los_Angeles", "America/Denver", "America/Vancouver")),
    ("ap-southeast", 0.05, ("Australia/Sydney", "Australia/Melbourne", "Asia/Singapore")),
)

FIRST_NAMES = (
    "Anna", "Ben", "Carla", "David", "Elena", "Felix", "Grace", "Hugo", "Ines", "Jonas",
    "Katja", "Liam", "Maria", "Noah", "Olivia", "Pablo", "Quinn", "Rosa", "Samir", "Tara",
    "Umar", "Vera", "William", "Yuki", "Zoe", "Marco", "Sofia", "Lukas", "Emma", "Daniel",
)  # fmt: skip
LAST_NAMES = (
    "Schmidt", "Dubois", "Garcia", "Smith", "Rossi", "Jansen", "Novak", "Kowalski", "Silva",
    "Murphy", "Johnson", "Nguyen", "Müller", "Fischer", "Martin", "Brown", "Wilson", "Lopez",
    "Andersson", "Taylor", "Moreau", "Costa", "Weber", "Clarke", "Chen", "Patel", "Kim",
)  # fmt: skip

# Devices in one household: mostly two or three.
HOUSEHOLD_SIZES = (1, 2, 2, 3, 3, 3, 4, 4, 5, 6)

# (world manufacturer identifier, make): real prefixes, so VINs look like real ones.
CAR_MAKERS = (
    ("WVW", "Volkswagen"),
    ("WBA", "BMW"),
    ("WDD", "Mercedes-Benz"),
    ("VF1", "Renault"),
    ("YV1", "Volvo"),
    ("1HG", "Honda"),
    ("1FA", "Ford"),
    ("5YJ", "Tesla"),
    ("JTD", "Toyota"),
    ("KMH", "Hyundai"),
)

VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # no I, O or Q
VIN_YEARS = "HJKLMNPRS"  # model years 2017 to 2025
_VIN_VALUES = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def make_owners(draw: random.Random, n: int) -> list[Owner]:
    """An owner for each of `n` devices, households of several devices in a row."""
    owners: list[Owner] = []
    number = 0
    while len(owners) < n:
        number += 1
        owner = _customer(draw, number)
        owners.extend([owner] * draw.choice(HOUSEHOLD_SIZES))
    return owners[:n]


def _customer(draw: random.Random, number: int) -> Owner:
    region, _, zones = draw.choices(REGIONS, weights=[r[1] for r in REGIONS])[0]
    return Owner(
        customer_id=f"cust-{number:05d}",
        customer_name=f"{draw.choice(FIRST_NAMES)} {draw.choice(LAST_NAMES)}",
        timezone=draw.choice(zones),
        region=region,
    )


def make_serial(draw: random.Random, prefix: str, number: int) -> str:
    """A serial like TH2-2431-0004A1F3: model, build year and week, a unique number."""
    year, week = draw.randint(19, 25), draw.randint(1, 52)
    return f"{prefix}-{year:02d}{week:02d}-{number % 16**8:08X}"


def make_vin(draw: random.Random, number: int) -> tuple[str, str]:
    """(VIN, make): 17 characters of [A-HJ-NPR-Z0-9], with a valid check digit."""
    wmi, make = draw.choice(CAR_MAKERS)
    descriptor = "".join(draw.choice(VIN_CHARS) for _ in range(5))
    plant = draw.choice(VIN_CHARS)
    body = f"{wmi}{descriptor}0{draw.choice(VIN_YEARS)}{plant}{number % 10**6:06d}"
    return body[:8] + vin_check_digit(body) + body[9:], make


def vin_check_digit(vin: str) -> str:
    """The ISO 3779 / North American check digit (position 9) of a 17-character VIN."""
    total = sum(_VIN_VALUES[c] * w for c, w in zip(vin, _VIN_WEIGHTS, strict=True))
    return "X" if total % 11 == 10 else str(total % 11)
