"""Wilson intervals, rates and Cohen's kappa."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refusal.stats import cohen_kappa, rate_with_ci, wilson


def test_wilson_known_values() -> None:
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 10)[0] == pytest.approx(0.0) and wilson(10, 10)[1] == pytest.approx(1.0)
    assert all(math.isnan(x) for x in wilson(0, 0))
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_rate_with_ci() -> None:
    r = rate_with_ci([True, False, 1, 0, None, float("nan")])
    assert r["n"] == 4 and r["rate"] == 0.5 and r["low"] < 0.5 < r["high"]
    assert math.isnan(rate_with_ci([])["rate"]) and rate_with_ci([])["n"] == 0
    assert rate_with_ci(np.array([1.0, 1.0]))["rate"] == 1.0
    with pytest.raises(ValueError):
        rate_with_ci([0.5, 1])


def test_cohen_kappa() -> None:
    assert cohen_kappa([0, 1, 1, 0], [0, 1, 1, 0]) == pytest.approx(1.0)
    assert cohen_kappa([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)
    # textbook example: po = 0.7, pe = 0.5 -> kappa = 0.4
    a = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa([0, 0.5, 1, 1], [0, 0.5, 1, None]) == pytest.approx(1.0)  # missing pairs dropped
    assert math.isnan(cohen_kappa([1, 1], [1, 1]))  # chance agreement 1: undefined
    with pytest.raises(ValueError):
        cohen_kappa([1], [1, 0])


def test_wilson_interval_always_holds_the_rate() -> None:
    """Error bars built as rate - low and high - rate are never negative (7/7 once gave high = 0.9999999999999999)."""
    for n in range(1, 200):
        for k in range(n + 1):
            low, high = wilson(k, n)
            assert low <= k / n <= high
