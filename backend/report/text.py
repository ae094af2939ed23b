"""Number formatting shared by the report's notes and its Markdown."""
from __future__ import annotations

import math


def pct(x, digits=1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{100 * x:.{digits}f}%"


def fmt(x, digits=3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"
