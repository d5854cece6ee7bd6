"""harness.stats: nearest-rank percentiles and the latency summary, table-driven."""

from __future__ import annotations

import pytest

from harness.stats import latency_summary, percentile

# (values, p, expected): nearest rank, each a value that was measured
PERCENTILE_ROWS = (
    ([5.0], 50, 5.0),
    ([5.0], 99, 5.0),
    ([1.0, 2.0], 50, 1.0),
    ([1.0, 2.0], 51, 2.0),
    ([3.0, 1.0, 2.0], 100, 3.0),
    ([3.0, 1.0, 2.0], 0, 1.0),
    (list(range(1, 101)), 95, 95),
    (list(range(1, 101)), 99, 99),
    (list(range(1, 1001)), 99, 990),
    ([], 50, None),
)


@pytest.mark.parametrize(("values", "p", "expected"), PERCENTILE_ROWS)
def test_percentile_is_the_nearest_rank(values, p, expected):
    assert percentile(values, p) == expected


@pytest.mark.parametrize("p", [-1, 101])
def test_percentile_outside_0_to_100_is_refused(p):
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1.0], p)


def test_latency_summary_rounds_median_p99_and_max():
    values = [0.1 * i for i in range(1, 201)]  # 0.1 .. 20.0

    assert latency_summary(values) == {"median": 10.05, "p99": 19.8, "max": 20.0}
    assert latency_summary(values, digits=0) == {"median": 10.0, "p99": 20.0, "max": 20.0}


def test_latency_summary_of_nothing_says_so():
    assert latency_summary([]) == {"median": None, "p99": None, "max": None}
