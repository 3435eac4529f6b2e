"""backend.formatting: how every number is written for people."""

from __future__ import annotations

import math

import pytest

from backend.formatting import interval, num, pct, pm, with_ci


@pytest.mark.parametrize("x, text", [
    (0.4375, "0.438"), (12.34, "12.3"), (1043.4, "1043"), (0.004375, "0.00438"),
    (0.9996, "1.00"), (99.96, "100"), (2.0, "2.00"), (-0.2309, "-0.231"), (0, "0"),
    (-0.00001, "-0.0000100"), (None, "–"), (math.nan, "–"),
])
def test_num_three_significant_digits_keeping_whole_digits(x, text):
    assert num(x) == text


def test_intervals():
    assert pm(1043.0, 1000.2, 1101.9) == "+58.9 / -42.8"
    assert pm(1.0, None, 2.0) == ""
    assert interval(0.5309, 0.8881) == "[0.531, 0.888]"
    assert with_ci(0.75, 0.5309, 0.8881, percent=True) == "75.0% [53.1%, 88.8%]"
    assert with_ci(3.0, None, None) == "3.00"
    assert pct(0.4375) == "43.8%"
