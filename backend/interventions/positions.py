"""Which prompt positions a splice replaces (:func:`splice_plan`).  No torch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

from ..errors import UsageError
from .spec import SPLICE_POSITIONS


@dataclass(frozen=True)
class SplicePlan:
    """Which target positions receive which source positions (indices into the real, unpadded prompts)."""

    target: Tuple[int, ...]
    source: Tuple[int, ...]
    target_len: int
    source_len: int
    prefix: int  # shared prefix length (positions 0..prefix-1)
    suffix: int  # shared suffix length (the last ``suffix`` positions, >= 1: the last position always)

    def describe(self) -> str:
        if self.target_len == self.source_len and len(self.target) == self.target_len:
            return f"all {self.target_len} positions"
        parts = []
        if self.prefix:
            parts.append(f"the shared prefix (positions 0-{self.prefix - 1})")
        n = self.target_len
        if self.suffix > 1:
            parts.append(f"the shared suffix (positions {n - self.suffix}-{n - 1} of {n}, the last included)")
        else:
            parts.append(f"the last position ({n - 1})")
        return " and ".join(parts)

    def to_dict(self) -> dict:
        return {"positions": list(self.target), "source_positions": list(self.source), "prefix": self.prefix,
                "suffix": self.suffix, "target_len": self.target_len, "source_len": self.source_len,
                "description": self.describe()}


def splice_plan(target_ids: Sequence[int], source_ids: Sequence[int], mode: str = "shared") -> SplicePlan:
    """The positions spliced from a source prompt into a target prompt (see the module docstring)."""
    t, s = list(target_ids), list(source_ids)
    n, m = len(t), len(s)
    if n == 0 or m == 0:
        raise UsageError("cannot splice an empty prompt")
    p = 0
    while p < min(n, m) and t[p] == s[p]:
        p += 1
    q = 0
    while q < min(n, m) - p and t[n - 1 - q] == s[m - 1 - q]:
        q += 1
    q = max(q, 1)  # the last position always
    if p >= min(n, m) and n == m:
        q = 0  # identical prompts: the prefix is everything
    shared = SplicePlan(
        target=tuple(list(range(min(p, n - q))) + list(range(n - q, n))),
        source=tuple(list(range(min(p, n - q))) + list(range(m - q, m))),
        target_len=n, source_len=m, prefix=min(p, n - q), suffix=q)
    if mode == "shared":
        return shared
    if mode == "last":
        return SplicePlan((n - 1,), (m - 1,), n, m, 0, 1)
    if mode == "all":
        if n != m:
            raise UsageError(
                f"cannot splice all positions: the prompts have {n} and {m} tokens. Use splice positions 'shared' "
                f"(it would splice {shared.describe()}) or 'last'")
        return SplicePlan(tuple(range(n)), tuple(range(n)), n, m, n, 0)
    raise UsageError(f"splice positions must be one of {', '.join(SPLICE_POSITIONS)}, got {mode!r}")
