"""Which security headers each kind of answer carries (api/headers.py); the answers
themselves, over real HTTP and in Chromium, are in test_dashboard.py."""

from __future__ import annotations

import pytest

from api.headers import DASHBOARD_POLICY, RECALL_POLICY, headers_for


@pytest.mark.parametrize(
    ("path", "policy", "cache"),
    [
        ("/dashboard/", DASHBOARD_POLICY, None),
        ("/dashboard/dashboard.js", DASHBOARD_POLICY, None),
        ("/my/", DASHBOARD_POLICY, None),
        ("/my/my.js", DASHBOARD_POLICY, None),
        ("/recall/abcdefghijklmnop", RECALL_POLICY, "no-store"),
        ("/api/v1/devices", None, None),
        ("/docs", None, None),  # Swagger UI runs inline script from a CDN: not restricted
        ("/", None, None),
    ],
)
def test_security_headers_by_path(path, policy, cache):
    headers = headers_for(path)
    assert headers["x-content-type-options"] == "nosniff"
    assert headers.get("content-security-policy") == policy
    assert headers.get("cache-control") == cache
    if policy is not None:
        assert "frame-ancestors 'none'" in policy
        assert headers["referrer-policy"] == "no-referrer"
