"""Trajectory metrics of the paper, exactly as fixed in ``shared/docs/method.md``. Pure numpy, no torch.

Conventions: steps are 1-based in every result (``exploration_end``, commitment runs); option indices are 0-based
positions in the order shown to the model; natural logarithms throughout.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import UsageError

from .settings import KL_THRESHOLD, KL_WINDOW, MASS_THRESHOLD, RUN_LENGTH  # noqa: F401  (re-exported)
# Probabilities are clipped to this floor inside logarithms so that a KL stays finite when a belief is exactly 0.
LOG_FLOOR = 1e-12


@dataclass(frozen=True)
class Run:
    """A maximal run of steps with the same argmax: option, first step, last step (1-based, inclusive)."""

    option: int
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


@dataclass
class TrajectoryMetrics:
    n_steps: int
    n_options: int
    final_answer: int
    correct: Optional[int]
    is_correct: Optional[bool]
    entropy: np.ndarray  # [T]
    entropy_norm: np.ndarray  # [T], divided by log(n_options)
    kl: np.ndarray  # [T-1], kl[t-1] = KL(p_{t+1} || p_t)
    argmax: np.ndarray  # [T]
    runs: List[Run]
    commitments: List[Run]
    exploration_end: Optional[int]  # 1-based step; None = never converged
    backtracked: bool
    abandoned: List[int]
    destination: Optional[int]  # the final answer when the instance backtracked, else None
    frontrunner: Optional[int]  # option of the first commitment
    params: Dict[str, float] = field(default_factory=dict)
    # Option mass (method.md, "Reporting rules"): None when the total option mass per step was not given.
    mass: Optional[np.ndarray] = None  # [T] total option mass per step
    mass_threshold: float = MASS_THRESHOLD
    low_mass: Optional[np.ndarray] = None  # [T] bool: the step is "not answering" (mass < threshold)

    @property
    def n_low_mass(self) -> Optional[int]:
        """Steps whose total option mass is below the threshold (None when the mass is unknown)."""
        return None if self.low_mass is None else int(self.low_mass.sum())

    @property
    def answering(self) -> Optional[bool]:
        """True when the option mass stays >= the threshold at every step from exploration end on (from the last
        step when the instance never converges); None when the mass is unknown."""
        if self.low_mass is None:
            return None
        start = self.exploration_end if self.exploration_end is not None else self.n_steps
        return not bool(self.low_mass[start - 1:].any())

    @property
    def later_argmax_change(self) -> Optional[int]:
        """First step after exploration end at which the argmax differs from the step before (None: none, or
        never converged).  Exploration end is not final: the belief may move again."""
        if self.exploration_end is None:
            return None
        for t in range(self.exploration_end + 1, self.n_steps + 1):
            if self.argmax[t - 1] != self.argmax[t - 2]:
                return t
        return None

    @property
    def later_kl_step(self) -> Optional[int]:
        """First step t after the exploration window whose step KL (from t to t+1) exceeds the threshold again."""
        if self.exploration_end is None:
            return None
        thr = self.params.get("kl_threshold", KL_THRESHOLD)
        win = int(self.params.get("kl_window", KL_WINDOW))
        for t in range(self.exploration_end + win, self.n_steps):
            if self.kl[t - 1] > thr:
                return t
        return None

    @property
    def backtracks_after_exploration_end(self) -> List[Tuple[Run, Run]]:
        """The backtracks whose new commitment starts after exploration end."""
        if self.exploration_end is None:
            return []
        return [(a, b) for a, b in self.backtracks if b.start > self.exploration_end]

    @property
    def converged(self) -> bool:
        return self.exploration_end is not None

    @property
    def exploration_length(self) -> Optional[int]:
        return self.exploration_end

    @property
    def backtracks(self) -> List[Tuple[Run, Run]]:
        """Each (abandoned commitment, the next commitment to a different option) pair, for annotation."""
        out = []
        for a, b in zip(self.commitments, self.commitments[1:]):
            if a.option != b.option:
                out.append((a, b))
        return out

    def summary(self) -> dict:
        """JSON-friendly scalars (no per-step arrays)."""
        return {
            "final_answer": self.final_answer,
            "correct": self.correct,
            "is_correct": self.is_correct,
            "exploration_end": self.exploration_end,
            "converged": self.converged,
            "backtracked": self.backtracked,
            "abandoned": list(self.abandoned),
            "destination": self.destination,
            "frontrunner": self.frontrunner,
            "commitments": [asdict(c) for c in self.commitments],
            "final_entropy": float(self.entropy[-1]),
            "mean_entropy": float(self.entropy.mean()),
            "mass_threshold": self.mass_threshold,
            "n_low_mass": self.n_low_mass,
            "answering": self.answering,
            "later_argmax_change": self.later_argmax_change,
        }


def _validate_probs(probs) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise UsageError(f"probs must be [steps, n_options], got shape {p.shape}")
    if p.shape[0] < 1 or p.shape[1] < 2:
        raise UsageError(f"probs needs at least 1 step and 2 options, got shape {p.shape}")
    if not np.isfinite(p).all():
        bad = int(np.argwhere(~np.isfinite(p))[0][0]) + 1
        raise UsageError(f"probs contain NaN or infinite values (first at step {bad})")
    if (p < 0).any():
        raise UsageError("probs contain negative values")
    return p


def entropy(probs) -> np.ndarray:
    """H_t = -sum p log p per step (0 log 0 = 0)."""
    p = _validate_probs(probs)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=1)


def step_kl(probs) -> np.ndarray:
    """kl_t = KL(p_{t+1} || p_t) for t = 1..T-1 (new distribution first); array of length T-1."""
    p = _validate_probs(probs)
    new, old = p[1:], p[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(new > 0, new * (np.log(np.maximum(new, LOG_FLOOR)) - np.log(np.maximum(old, LOG_FLOOR))), 0.0)
    return terms.sum(axis=1)


def exploration_end(kl: np.ndarray, threshold: float = KL_THRESHOLD, window: int = KL_WINDOW) -> Optional[int]:
    """Smallest 1-based t with kl_t .. kl_{t+window-1} all <= threshold; None if there is none."""
    ok = np.asarray(kl) <= threshold
    for t in range(len(ok) - window + 1):
        if ok[t:t + window].all():
            return t + 1
    return None


def argmax_runs(argmax: Sequence[int]) -> List[Run]:
    runs: List[Run] = []
    for t, a in enumerate(argmax, start=1):
        if runs and runs[-1].option == a:
            runs[-1] = Run(runs[-1].option, runs[-1].start, t)
        else:
            runs.append(Run(int(a), t, t))
    return runs


def low_mass_flags(mass, threshold: float = MASS_THRESHOLD) -> np.ndarray:
    """Per step: True where the total option mass is below ``threshold`` (the step is "not answering")."""
    check_mass_threshold(threshold)
    return np.asarray(mass, dtype=np.float64) < threshold


def check_mass_threshold(threshold) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)) \
            or not 0 <= float(threshold) <= 1:
        raise UsageError(f"the mass threshold must be a number between 0 and 1, got {threshold!r}")
    return float(threshold)


def backtrack_verdict(argmax: Sequence[int], run_length: int = RUN_LENGTH) -> Tuple[bool, List[int], List[Run]]:
    """(backtracked, abandoned options in order, commitments) of an argmax sequence under the paper's rule with
    commitments of ``run_length`` steps (the rule of :func:`analyze_trajectory`, reusable for sensitivity)."""
    am = np.asarray(argmax)
    commitments = [r for r in argmax_runs(am) if r.length >= run_length]
    final = int(am[-1])
    # Backtracking: a commitment to a, later a commitment to b != a, and b is the final answer.
    final_commit_idx = [i for i, c in enumerate(commitments) if c.option == final]
    backtracked = False
    abandoned: List[int] = []
    if final_commit_idx:
        last = final_commit_idx[-1]
        for c in commitments[:last]:
            if c.option != final:
                backtracked = True
                if c.option not in abandoned:
                    abandoned.append(c.option)
    return backtracked, abandoned, commitments


def exploration_ends(kl, threshold: float = KL_THRESHOLD, window: int = KL_WINDOW) -> np.ndarray:
    """:func:`exploration_end` for many instances at once: ``kl`` [N, T-1] -> [N] float (NaN = never converged)."""
    ok = np.asarray(kl, dtype=np.float64) <= threshold
    N, L = ok.shape if ok.ndim == 2 else (0, 0)
    out = np.full(N, np.nan)
    if L < window:
        return out
    c = np.concatenate([np.zeros((N, 1)), np.cumsum(ok, axis=1)], axis=1)
    full = (c[:, window:] - c[:, :-window]) == window  # [N, L-window+1]: window starting at t is all ok
    has = full.any(axis=1)
    out[has] = full[has].argmax(axis=1) + 1
    return out


def analyze_trajectory(
    probs,
    correct: Optional[int] = None,
    kl_threshold: float = KL_THRESHOLD,
    kl_window: int = KL_WINDOW,
    run_length: int = RUN_LENGTH,
    mass=None,
    mass_threshold: float = MASS_THRESHOLD,
) -> TrajectoryMetrics:
    """All per-instance metrics of method.md for beliefs ``probs`` [steps, n_options].

    ``mass``: the total option mass per step [steps] (or the raw masses [steps, n_options], summed), when known;
    steps below ``mass_threshold`` are flagged in ``low_mass`` ("not answering")."""
    p = _validate_probs(probs)
    T, n = p.shape
    if correct is not None and not 0 <= int(correct) < n:
        raise UsageError(f"correct index {correct} is out of range for {n} options")
    if kl_window < 1 or run_length < 1:
        raise UsageError("kl_window and run_length must be >= 1")
    mass_threshold = check_mass_threshold(mass_threshold)
    total = None
    if mass is not None:
        total = np.asarray(mass, dtype=np.float64)
        if total.ndim == 2:
            total = total.sum(axis=1)
        if total.shape != (T,):
            raise UsageError(f"mass must have one value per step ({T}), got shape {total.shape}")
    H = entropy(p)
    kl = step_kl(p)
    am = p.argmax(axis=1)  # ties: lowest index
    runs = argmax_runs(am)
    backtracked, abandoned, commitments = backtrack_verdict(am, run_length)
    final = int(am[-1])
    return TrajectoryMetrics(
        n_steps=T,
        n_options=n,
        final_answer=final,
        correct=None if correct is None else int(correct),
        is_correct=None if correct is None else final == int(correct),
        entropy=H,
        entropy_norm=H / np.log(n),
        kl=kl,
        argmax=am,
        runs=runs,
        commitments=commitments,
        exploration_end=exploration_end(kl, kl_threshold, kl_window),
        backtracked=backtracked,
        abandoned=abandoned,
        destination=final if backtracked else None,
        frontrunner=commitments[0].option if commitments else None,
        params={"kl_threshold": kl_threshold, "kl_window": kl_window, "run_length": run_length},
        mass=total,
        mass_threshold=mass_threshold,
        low_mass=None if total is None else total < mass_threshold,
    )
