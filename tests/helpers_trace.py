"""Synthetic Trace objects with chosen beliefs (no model), for plot and dashboard tests."""
from __future__ import annotations

import numpy as np

from backend.trace import Trace


def make_trace(probs, correct=0, options=None, seed=0, item_id="t-1", variant="base", order=None, hidden_dim=8):
    p = np.asarray(probs, dtype=np.float64)
    K, n = p.shape
    options = options or [f"option {i}" for i in range(n)]
    rng = np.random.default_rng(seed)
    return Trace(
        model="synthetic", checkpoint_hash="0" * 8, question="Which one?", options=list(options), correct=correct,
        steps=K, seed=seed, init_scale=1.0, template={"name": "plain"}, prompt="Q", prompt_ids=[1, 2, 3],
        option_token_ids=[[10 + i] for i in range(n)], raw_mass=p * 0.5, probs=p,
        top_ids=np.tile(np.arange(10, 20), (K, 1)), top_probs=np.full((K, 10), 0.05),
        top_tokens=[[f"tok{j}" for j in range(10)] for _ in range(K)],
        hidden_last=rng.normal(size=(K, hidden_dim)).astype(np.float16),
        hidden_all=rng.normal(size=(K, 3, hidden_dim)).astype(np.float16),
        item_id=item_id, variant=variant, order=list(order) if order is not None else list(range(n)),
    )


def one_hot_path(argmaxes, n=4, strong=0.85):
    """Beliefs whose argmax follows ``argmaxes`` (one entry per step)."""
    rows = []
    for a in argmaxes:
        r = np.full(n, (1 - strong) / (n - 1))
        r[a] = strong
        rows.append(r)
    return np.array(rows)


def backtracking_probs():
    """A for steps 1-5, then B for steps 6-30 (converges after the switch): one backtrack A -> B."""
    return one_hot_path([0] * 5 + [1] * 25)


def never_converging_probs(K=30, n=4):
    """Alternating argmax every 2 steps: no commitment, no convergence."""
    return one_hot_path([(t // 2) % n for t in range(K)], n=n, strong=0.4)
