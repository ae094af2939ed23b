"""Run-time set-up for a long-running process serving models (the app): which models to offer, which one to
open on, how many torch threads to use, and how a model's tokens read as text.

Nothing here loads a model: ``load_bundle`` does (see the package docstring).
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence

import torch
from threadpoolctl import threadpool_limits
# Imported at start-up rather than on the first model load: a serving process loads models for several sessions
# at once, and concurrent first imports of one large package race ("partially initialized module").
from transformers import PreTrainedTokenizerFast  # noqa: F401

from ..settings import ENV_DEFAULT_MODEL, ENV_TORCH_THREADS
from . import default_model_name, shipped_models


def configure_torch_threads(n: Optional[int] = None) -> int:
    """Intra-op threads for torch (default: half the cores, at least 1; $LOOPLENS_TORCH_THREADS overrides).

    A dashboard shares the CPU with its web server; on small machines oversubscribed torch threads make a
    forward tens of times slower.  The BLAS pools of numpy/scikit-learn get the same limit (their matrices are
    small here).
    """
    if n is None:
        raw = os.environ.get(ENV_TORCH_THREADS, "").strip()
        n = int(raw) if raw.isdigit() and int(raw) > 0 else max(1, (os.cpu_count() or 2) // 2)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    threadpool_limits(limits=n)
    return n


def default_model() -> Optional[str]:
    """$LOOPLENS_DEFAULT_MODEL, else the first shipped model (None if there is none)."""
    env = os.environ.get(ENV_DEFAULT_MODEL, "").strip()
    return env or default_model_name()


def model_choices() -> List[str]:
    """The models to offer: the shipped ones, with $LOOPLENS_DEFAULT_MODEL first when it is not one of them."""
    names = list(shipped_models())
    env = os.environ.get(ENV_DEFAULT_MODEL, "").strip()
    if env and env not in names:
        names.insert(0, env)
    return names


def token_strings(bundle, ids: Sequence[int]) -> List[str]:
    """Each token id as the model's tokenizer spells it (for per-token views)."""
    return list(bundle.tokenizer.batch_decode([[int(i)] for i in ids]))


def keeps_all_states(bundle, steps: int, n_runs: int, budget_bytes: int = 64 * 2**20, max_tokens: int = 512) -> bool:
    """Whether per-position states (the convergence heatmap) of ``n_runs`` runs fit ``budget_bytes`` in fp16."""
    return bundle.model.config.n_embd * int(steps) * max_tokens * 2 * int(n_runs) <= budget_bytes
