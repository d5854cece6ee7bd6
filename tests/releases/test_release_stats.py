"""The rate ratio's interval against known values (R's binom.test and poisson.test)."""

from __future__ import annotations

import math

import pytest

from releases.stats import EXACT_UP_TO, beta_cdf, clopper_pearson, rate_ratio

# (x, n, low, high): binom.test(x, n)$conf.int in R.
PROPORTIONS = (
    (5, 10, 0.1870860, 0.8129140),
    (0, 10, 0.0, 0.3084971),
    (10, 10, 0.6915029, 1.0),
    (1, 100, 0.0002531, 0.0544594),
)


@pytest.mark.parametrize(("x", "n", "low", "high"), PROPORTIONS)
def test_clopper_pearson_matches_r(x, n, low, high):
    got = clopper_pearson(x, n)
    assert got[0] == pytest.approx(low, abs=2e-7)
    assert got[1] == pytest.approx(high, abs=2e-7)


def test_beta_cdf_of_a_uniform_is_x():
    assert beta_cdf(0.3, 1, 1) == pytest.approx(0.3)
    assert beta_cdf(0.5, 7, 7) == pytest.approx(0.5)


def test_rate_ratio_matches_r_poisson_test():
    # poisson.test(c(11, 6+8+7), c(800, 1083+1050+878)) in R's own examples.
    got = rate_ratio(11, 800, 21, 1083 + 1050 + 878)
    assert got.estimate == pytest.approx(1.971488, abs=1e-6)
    assert (got.low, got.high) == (
        pytest.approx(0.8584264, abs=1e-6),
        pytest.approx(4.2772659, abs=1e-6),
    )
    assert got.method == "exact" and not got.excludes_one()


def test_twice_the_reboots_over_a_real_cohort_excludes_one():
    got = rate_ratio(800, 400, 400, 400)
    assert got.estimate == pytest.approx(2.0)
    assert 1.7 < got.low < 2.0 < got.high < 2.3 and got.excludes_one()


def test_a_small_cohort_does_not_shout():
    # Twice the rate, but 4 events against 2: the interval is wide and includes 1.
    got = rate_ratio(4, 10, 2, 10)
    assert got.estimate == pytest.approx(2.0) and not got.excludes_one()
    assert got.high > 10


def test_no_events_in_the_baseline_has_no_estimate_and_no_upper_bound():
    got = rate_ratio(3, 100, 0, 100)
    assert got.estimate is None and got.high is None and got.low > 0


def test_no_events_anywhere_or_no_exposure_is_no_comparison():
    assert rate_ratio(0, 100, 0, 100) is None
    assert rate_ratio(5, 0, 5, 100) is None


def test_large_counts_use_the_log_normal_interval_which_agrees_with_the_exact_one():
    a, b = EXACT_UP_TO, EXACT_UP_TO + 500  # the sum is past EXACT_UP_TO
    approx = rate_ratio(b, 1000, a, 1000)
    assert approx.method == "log-normal"
    spread = 1.959964 * math.sqrt(1 / a + 1 / b)
    assert approx.low == pytest.approx(b / a * math.exp(-spread), rel=1e-6)
    # Just under the limit, the exact interval and the log-normal one agree to 0.3%.
    a, b = 480, 500
    exact = rate_ratio(b, 1000, a, 1000)
    spread = 1.959964 * math.sqrt(1 / a + 1 / b)
    assert exact.method == "exact"
    assert exact.low == pytest.approx(b / a * math.exp(-spread), rel=3e-3)
    assert exact.high == pytest.approx(b / a * math.exp(spread), rel=3e-3)
