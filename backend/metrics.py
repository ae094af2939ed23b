"""Trajectory metrics of the paper, exactly as fixed in ``shared/docs/method.md``. Pure numpy, no torch.

Conventions: steps are 1-based in every result (``exploration_end``, commitment runs); option indices are 0-based
positions in the order shown to the model; natural logarithms throughout.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import UsageError

from .settings import KL_THRESHOLD, KL_WINDOW, RUN_LENGTH  # noqa: F401  (re-exported)
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


def analyze_trajectory(
    probs,
    correct: Optional[int] = None,
    kl_threshold: float = KL_THRESHOLD,
    kl_window: int = KL_WINDOW,
    run_length: int = RUN_LENGTH,
) -> TrajectoryMetrics:
    """All per-instance metrics of method.md for beliefs ``probs`` [steps, n_options]."""
    p = _validate_probs(probs)
    T, n = p.shape
    if correct is not None and not 0 <= int(correct) < n:
        raise UsageError(f"correct index {correct} is out of range for {n} options")
    if kl_window < 1 or run_length < 1:
        raise UsageError("kl_window and run_length must be >= 1")
    H = entropy(p)
    kl = step_kl(p)
    am = p.argmax(axis=1)  # ties: lowest index
    runs = argmax_runs(am)
    commitments = [r for r in runs if r.length >= run_length]
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
    )
