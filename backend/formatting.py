"""How numbers are written for people: the app's tables and plots, the CLI's summaries. One place,
so "3 significant digits" and the form of an interval are the same everywhere.

- `num(x)`: 3 significant digits, but never rounding away whole digits (1043 -> "1043",
  12.34 -> "12.3", 0.004375 -> "0.00438"); None/NaN -> "–".
- `pm(value, low, high)`: an interval as offsets from its estimate, the arenas' "+12 / -9".
- `interval(low, high)`: "[0.531, 0.888]"; `with_ci(value, low, high)`: "0.75 [0.531, 0.888]".
- `pct(x)`: a share as a percentage with 3 significant digits ("43.8%").
"""

from __future__ import annotations

import math

DASH = "–"


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def num(x: float | int | None, digits: int = 3) -> str:
    """`x` with `digits` significant digits (whole digits kept), no exponent."""
    if _missing(x):
        return DASH
    x = float(x)
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    text = f"{x:.{decimals}f}"
    # rounding may add a digit (0.9996 -> "1.000"): write it again with one decimal fewer
    if decimals and len(text.replace("-", "").replace(".", "").lstrip("0")) > digits:
        text = f"{x:.{decimals - 1}f}"
    return "0" if float(text) == 0 else text


def pct(x: float | None, digits: int = 3) -> str:
    return DASH if _missing(x) else f"{num(100 * float(x), digits)}%"


def pm(value: float | None, low: float | None, high: float | None) -> str:
    """The interval around `value` as "+(high - value) / -(value - low)"."""
    if _missing(value) or _missing(low) or _missing(high):
        return ""
    return f"+{num(max(0.0, high - value))} / -{num(max(0.0, value - low))}"


def interval(low: float | None, high: float | None, percent: bool = False) -> str:
    if _missing(low) or _missing(high):
        return ""
    f = pct if percent else num
    return f"[{f(low)}, {f(high)}]"


def with_ci(value: float | None, low: float | None, high: float | None,
            percent: bool = False) -> str:
    """"0.75 [0.531, 0.888]"; the estimate alone when there is no interval."""
    f = pct if percent else num
    ci = interval(low, high, percent)
    return f"{f(value)} {ci}" if ci else f(value)
