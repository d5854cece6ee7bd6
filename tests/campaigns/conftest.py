"""Campaign fixtures: a runner whose commands go to devices played in SQL (played.py)."""

from __future__ import annotations

import pytest
from played import Devices

from campaigns.runner import CampaignRunner


@pytest.fixture
def runner(make_settings, dsn):
    made = []

    def build(devices: Devices, **overrides) -> CampaignRunner:
        made.append(CampaignRunner(make_settings(**overrides), dsn, None, publish=devices.publish))
        return made[-1]

    yield build
    for r in made:
        r.stop()
