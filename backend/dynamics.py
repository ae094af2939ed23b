"""Latent dynamics beside the belief: how the state moves from step to step.  Pure numpy.

From the states s_1..s_K (``[K, E]`` at the last position, or ``[K, S, E]`` at every position; s_0 is not
recorded) per step t (1-based; NaN where a quantity is undefined):

- ``step_size[t]``   = ||s_t - s_(t-1)|| / ||s_t||                      (t >= 2)
- ``update_cos[t]``  = cos(s_t - s_(t-1), s_(t-1) - s_(t-2))            (t >= 3): +1 keeps going the same way,
                                                                        -1 turns back
- ``dist_final[t]``  = ||s_t - s_K|| / ||s_K||                          (t >= 1; 0 at K)
- ``accel[t]``       = dist_final[t] - dist_final[t-1]                   (t >= 2): the change of the distance

Around events (e.g. backtrack steps, :func:`backtrack_steps`), :func:`around_events` gives the mean of a
per-step series at steps relative to the event, with a bootstrap band over events.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Sequence

import numpy as np

from .errors import UsageError
from .metrics import TrajectoryMetrics
from .stats import bootstrap_ci

QUANTITIES = ("step_size", "update_cos", "dist_final", "accel")
EPS = 1e-12


def _states(states) -> np.ndarray:
    h = np.asarray(states, dtype=np.float64)
    if h.ndim not in (2, 3):
        raise UsageError(f"states must be [steps, E] or [steps, positions, E], got shape {h.shape}")
    if h.shape[0] < 1 or h.shape[-1] < 1:
        raise UsageError(f"states need at least one step and one feature, got shape {h.shape}")
    if not np.isfinite(h).all():
        raise UsageError("states contain NaN or infinite values")
    return h


def jsonable(a):
    """An array as nested lists of floats, NaN/inf as None (JSON has no NaN)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 0:
        return float(a) if np.isfinite(a) else None
    return [jsonable(x) for x in a]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > EPS, num / np.maximum(den, EPS), np.nan)


def step_size(states) -> np.ndarray:
    """||s_t - s_(t-1)|| / ||s_t|| per step ([K] or [K, S]); NaN at t = 1."""
    h = _states(states)
    out = np.full(h.shape[:-1], np.nan)
    if h.shape[0] > 1:
        out[1:] = _ratio(np.linalg.norm(h[1:] - h[:-1], axis=-1), np.linalg.norm(h[1:], axis=-1))
    return out


def update_cosine(states) -> np.ndarray:
    """Cosine between consecutive updates s_t - s_(t-1) and s_(t-1) - s_(t-2); NaN at t = 1, 2 (or no motion)."""
    h = _states(states)
    out = np.full(h.shape[:-1], np.nan)
    if h.shape[0] > 2:
        u = h[1:] - h[:-1]
        a, b = u[1:], u[:-1]
        out[2:] = _ratio((a * b).sum(-1), np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return out


def distance_to_final(states) -> np.ndarray:
    """||s_t - s_K|| / ||s_K|| per step (0 at the last step)."""
    h = _states(states)
    return _ratio(np.linalg.norm(h - h[-1:], axis=-1), np.broadcast_to(np.linalg.norm(h[-1], axis=-1), h.shape[:-1]))


def acceleration(states) -> np.ndarray:
    """Change of the distance to the final state: dist_final[t] - dist_final[t-1]; NaN at t = 1."""
    d = distance_to_final(states)
    out = np.full(d.shape, np.nan)
    out[1:] = d[1:] - d[:-1]
    return out


@dataclass
class Dynamics:
    """The four per-step series of one run ([K] from last-position states; [K, S] from all positions)."""

    step_size: np.ndarray
    update_cos: np.ndarray
    dist_final: np.ndarray
    accel: np.ndarray

    @property
    def n_steps(self) -> int:
        return int(self.step_size.shape[0])

    def to_dict(self) -> Dict[str, list]:
        """JSON-friendly lists (NaN -> None)."""
        return {k: jsonable(getattr(self, k)) for k in QUANTITIES}

    def mean_over_positions(self) -> "Dynamics":
        """[K, S] -> [K]: each series averaged over positions (ignoring undefined entries)."""
        if self.step_size.ndim == 1:
            return self
        return Dynamics(*(np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan for r in getattr(self, k)])
                          for k in QUANTITIES))


def dynamics(states) -> Dynamics:
    """All four series for states [K, E] (last position) or [K, S, E] (every position)."""
    h = _states(states)
    return Dynamics(step_size(h), update_cosine(h), distance_to_final(h), acceleration(h))


# ---------------------------------------------------------------------------------------------- around events
def backtrack_steps(metrics: TrajectoryMetrics) -> List[int]:
    """The step of each backtrack: the first step of the commitment that replaces an abandoned one (1-based)."""
    return [b.start for _, b in metrics.backtracks]


def event_window(series, event_step: int, before: int, after: int) -> np.ndarray:
    """series at steps event_step - before .. event_step + after (NaN outside the run): [before + after + 1]."""
    s = np.asarray(series, dtype=np.float64)
    K = s.shape[0]
    out = np.full(before + after + 1, np.nan)
    for i, off in enumerate(range(-before, after + 1)):
        t = event_step + off
        if 1 <= t <= K:
            out[i] = s[t - 1]
    return out


@dataclass
class EventProfile:
    """Mean of a series at steps relative to events, with a bootstrap band over events."""

    offsets: np.ndarray  # [W] steps relative to the event (0 = the event step)
    mean: np.ndarray  # [W]
    low: np.ndarray
    high: np.ndarray
    count: np.ndarray  # [W] events contributing at each offset
    n_events: int

    def to_dict(self) -> dict:
        f = jsonable
        return {"offsets": self.offsets.tolist(), "mean": f(self.mean), "low": f(self.low), "high": f(self.high),
                "count": self.count.tolist(), "n_events": self.n_events}


def around_events(series_list: Sequence, events_list: Sequence[Iterable[int]], before: int = 5, after: int = 5,
                  n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> EventProfile:
    """Mean of per-run series around each run's events (one window per event), with a bootstrap band.

    ``series_list[i]``: run i's per-step series [K_i]; ``events_list[i]``: its event steps (1-based).  Offsets
    outside a run are missing (NaN), not zero; the band resamples events.
    """
    if len(series_list) != len(events_list):
        raise UsageError(f"got {len(series_list)} series and {len(events_list)} event lists")
    if before < 0 or after < 0:
        raise UsageError("before and after must be >= 0")
    rows = [event_window(s, int(e), before, after) for s, ev in zip(series_list, events_list) for e in ev]
    offsets = np.arange(-before, after + 1)
    W = offsets.size
    if not rows:
        nan = np.full(W, np.nan)
        return EventProfile(offsets, nan, nan.copy(), nan.copy(), np.zeros(W, int), 0)
    m = np.stack(rows)
    count = np.isfinite(m).sum(0)
    est, lo, hi = (np.full(W, np.nan) for _ in range(3))
    for i in range(W):  # each offset over the events that reach it
        col = m[:, i][np.isfinite(m[:, i])]
        if col.size:
            e, l, h = bootstrap_ci(col, n_boot=n_boot, ci=ci, seed=seed)
            est[i] = e
            if col.size > 1:
                lo[i], hi[i] = l, h
    return EventProfile(offsets, est, lo, hi, count, len(rows))


def event_profiles(series_by_run: Sequence[Dynamics], events_list: Sequence[Iterable[int]], before: int = 5,
                   after: int = 5, **kw) -> Dict[str, EventProfile]:
    """:func:`around_events` for each of the four quantities."""
    return {q: around_events([getattr(d, q) for d in series_by_run], events_list, before, after, **kw)
            for q in QUANTITIES}
