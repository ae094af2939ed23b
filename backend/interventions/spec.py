"""What an intervention is: :class:`Intervention` (kind, step, parameters), validated, as JSON.  No torch."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from ..errors import UsageError

KINDS = ("noise", "reset", "freeze", "splice")
SPLICE_FROM_KEYS = ("variant", "permutation", "seed")
SPLICE_POSITIONS = ("shared", "last", "all")
SCHEMA = "looplens.intervention/1"


# ---------------------------------------------------------------------------------------------- description
@dataclass(frozen=True)
class Intervention:
    """One intervention at step ``at``; serialises to JSON (:meth:`to_dict` / :meth:`from_dict`).

    ``splice_from``: None (the run itself) or one of ``{"variant": V}``, ``{"permutation": P}``,
    ``{"seed": S}``: the other run of the same item whose state at ``splice_step`` is spliced in.
    """

    kind: str
    at: int
    sigma: Optional[float] = None  # noise
    noise_seed: int = 0  # noise
    reset_seed: Optional[int] = None  # reset: None = the run's own initial-state seed
    splice_from: Optional[Dict[str, object]] = None  # splice
    splice_step: Optional[int] = None  # splice: None = ``at``
    splice_positions: str = "shared"  # splice

    def __post_init__(self):
        if self.kind not in KINDS:
            raise UsageError(f"unknown intervention {self.kind!r}: use one of {', '.join(KINDS)}")
        if isinstance(self.at, bool) or not isinstance(self.at, (int, np.integer)) or self.at < 1:
            raise UsageError(f"the intervention step (at) must be a whole number >= 1, got {self.at!r}")
        object.__setattr__(self, "at", int(self.at))
        given = {"sigma": self.sigma is not None, "reset_seed": self.reset_seed is not None,
                 "splice_from": self.splice_from is not None, "splice_step": self.splice_step is not None}
        allowed = {"noise": {"sigma"}, "reset": {"reset_seed"}, "freeze": set(),
                   "splice": {"splice_from", "splice_step"}}[self.kind]
        extra = [k for k, v in given.items() if v and k not in allowed]
        if extra:
            raise UsageError(f"{', '.join(extra)} does not apply to a {self.kind} intervention")
        if self.kind == "noise":
            if self.sigma is None:
                raise UsageError("a noise intervention needs sigma (noise scale relative to the state's norm)")
            s = float(self.sigma)
            if not math.isfinite(s) or s < 0:
                raise UsageError(f"sigma must be a finite number >= 0, got {self.sigma}")
            object.__setattr__(self, "sigma", s)
        if self.kind == "splice":
            if self.splice_positions not in SPLICE_POSITIONS:
                raise UsageError(f"splice positions must be one of {', '.join(SPLICE_POSITIONS)}, "
                                 f"got {self.splice_positions!r}")
            if self.splice_from is not None:
                sf = dict(self.splice_from)
                if len(sf) != 1 or next(iter(sf)) not in SPLICE_FROM_KEYS:
                    raise UsageError("splice_from must name one of variant=V, permutation=P or seed=S")
                key, val = next(iter(sf.items()))
                if key != "variant":
                    if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 0:
                        raise UsageError(f"splice_from {key} must be a whole number >= 0, got {val!r}")
                    sf[key] = int(val)
                object.__setattr__(self, "splice_from", sf)
            if self.splice_step is not None:
                if isinstance(self.splice_step, bool) or not isinstance(self.splice_step, (int, np.integer)) \
                        or self.splice_step < 1:
                    raise UsageError(f"splice step must be a whole number >= 1, got {self.splice_step!r}")
                object.__setattr__(self, "splice_step", int(self.splice_step))

    @property
    def source_step(self) -> int:
        """The step of the splice source's state (``splice_step``, default ``at``)."""
        return self.splice_step if self.splice_step is not None else self.at

    def check(self, steps: int) -> "Intervention":
        """Refuse steps outside the run: 1 <= at < K, 1 <= splice step <= K."""
        if not 1 <= self.at < steps:
            raise UsageError(f"the intervention step must be between 1 and {steps - 1} for a {steps}-step run "
                             f"(it acts on s_k before later steps), got {self.at}")
        if self.kind == "splice" and not 1 <= self.source_step <= steps:
            raise UsageError(f"the splice step must be between 1 and {steps}, got {self.source_step}")
        return self

    def to_dict(self) -> dict:
        d = {"schema": SCHEMA, "kind": self.kind, "at": self.at}
        if self.kind == "noise":
            d.update(sigma=self.sigma, noise_seed=self.noise_seed)
        elif self.kind == "reset":
            d["reset_seed"] = self.reset_seed
        elif self.kind == "splice":
            d.update(splice_from=self.splice_from, splice_step=self.source_step,
                     splice_positions=self.splice_positions)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "Intervention":
        if not isinstance(d, dict):
            raise UsageError("an intervention must be a JSON object")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known - {"schema"})
        if unknown:
            raise UsageError(f"unknown intervention field(s): {', '.join(unknown)}")
        if "kind" not in d or "at" not in d:
            raise UsageError("an intervention needs 'kind' and 'at'")
        kw = {k: v for k, v in d.items() if k in known}
        if kw.get("kind") != "noise":
            kw.pop("noise_seed", None)
        if kw.get("kind") != "splice":
            kw.pop("splice_positions", None)
        return cls(**kw)

    def label(self) -> str:
        """A short human-readable description, e.g. 'noise sigma=0.5 at step 7'."""
        if self.kind == "noise":
            what = f"noise sigma={self.sigma:g}"
        elif self.kind == "reset":
            what = "reset to s_0" + ("" if self.reset_seed is None else f" (seed {self.reset_seed})")
        elif self.kind == "freeze":
            what = "freeze"
        else:
            src = "this run" if not self.splice_from else ", ".join(f"{k} {v}" for k, v in self.splice_from.items())
            what = f"splice ({src}, step {self.source_step}, {self.splice_positions} positions)"
        return f"{what} at step {self.at}"
