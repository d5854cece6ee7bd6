"""Campaign fixtures: a runner whose commands go to devices played in SQL (played.py)."""

from __future__ import annotations

import pytest
from played import Devices

from campaigns.runner import CampaignRunner


@pytest.fixture
def runner(make_settings, dsn, route):
    """Campaign runners whose every tick is followed by the router routing what it recorded,
    as the alerts process does beside a running runner."""
    made = []

    class RoutedRunner(CampaignRunner):
        def tick(self, now=None):
            report = super().tick(now)
            if now is not None:
                route(now)
            return report

    def build(devices: Devices, **overrides) -> CampaignRunner:
        made.append(RoutedRunner(make_settings(**overrides), dsn, None, publish=devices.publish))
        return made[-1]

    yield build
    for r in made:
        r.stop()
