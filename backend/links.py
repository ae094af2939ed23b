"""Shareable links: the view a URL's query string fixes (model, question source, item, variant, answer order,
steps, seed, init scale, or a typed question), parsed defensively: a bad value is dropped with a message, never
an exception.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Dict, List, Mapping, Optional, Tuple

from .items import VARIANTS
from .settings import DEFAULT_SEED, DEFAULT_STEPS, MAX_STEPS, MIN_STEPS

MAX_TEXT = 4000  # characters kept of a text parameter (question, options)


@dataclass
class ViewState:
    """What a shareable URL fixes: model, source, item, variant, permutation, steps, seed, init scale."""

    model: Optional[str] = None
    bench: Optional[str] = None  # benchmark file name in data/benchmarks
    item: Optional[str] = None
    variant: str = "base"
    perm: int = 0
    steps: int = DEFAULT_STEPS
    seed: int = DEFAULT_SEED
    init: float = 1.0
    q: Optional[str] = None  # custom question
    opts: Optional[str] = None  # custom options, "|"-separated
    ans: Optional[str] = None  # custom correct letter

    def to_query(self) -> Dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None}


def parse_query(params: Mapping[str, object]) -> Tuple[ViewState, List[str]]:
    """Query parameters -> ViewState; invalid values are dropped with a message (never an exception)."""
    st = ViewState()
    problems: List[str] = []

    def get(k):
        v = params.get(k)
        if isinstance(v, (list, tuple)):
            v = v[-1] if v else None
        return None if v is None else str(v)

    for k in ("model", "bench", "item", "q", "opts", "ans"):
        v = get(k)
        if v is not None and v.strip():
            setattr(st, k, v.strip()[:MAX_TEXT])
    v = get("variant")
    if v is not None:
        if v in VARIANTS:
            st.variant = v
        else:
            problems.append(f"variant {v!r} in the link is not one of {', '.join(VARIANTS)}; using base")
    for k, lo, hi in (("perm", 0, 10**6), ("steps", MIN_STEPS, MAX_STEPS), ("seed", 0, 2**31 - 1)):
        v = get(k)
        if v is None:
            continue
        try:
            x = int(v)
            if not lo <= x <= hi:
                raise ValueError
            setattr(st, k, x)
        except ValueError:
            problems.append(f"{k}={v!r} in the link is not a whole number in {lo}..{hi}; using {getattr(st, k)}")
    v = get("init")
    if v is not None:
        try:
            x = float(v)
            if not (math.isfinite(x) and 0 <= x <= 100):
                raise ValueError
            st.init = x
        except ValueError:
            problems.append(f"init={v!r} in the link is not a number in 0..100; using {st.init}")
    if st.bench is not None and ("/" in st.bench or "\\" in st.bench or not st.bench.endswith(".jsonl")):
        problems.append(f"bench={st.bench!r} is not a shipped benchmark file name; ignored")
        st.bench = None
    return st, problems
