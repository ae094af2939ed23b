"""The state hooks that apply an intervention inside ``model.iterate_steps`` (every family's one run loop), and
capturing a run's state at a step."""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .positions import SplicePlan
from .spec import Intervention


def _row_lengths(prompt, B: int, S: int) -> List[int]:
    am = getattr(prompt, "attention_mask", None)
    return [S] * B if am is None else [int(x) for x in am.sum(-1).tolist()]


def noise_generator_seed(noise_seed: int, run_seed: Optional[int]) -> int:
    """The seed of one run's noise: derived from the intervention's noise seed and the run's own seed."""
    return int(np.random.SeedSequence([int(noise_seed), int(run_seed or 0)]).generate_state(1)[0])


def add_relative_noise(state: torch.Tensor, lengths: Sequence[int], sigma: float,
                       seeds: Sequence[int]) -> torch.Tensor:
    """state + sigma * |state[pos]| / sqrt(E) * z on each row's real positions (z from a per-row generator)."""
    B, S, E = state.shape
    out = state.clone()
    for i, n in enumerate(lengths):
        g = torch.Generator().manual_seed(int(seeds[i]))
        z = torch.randn(int(n), E, generator=g, dtype=torch.float32).to(state.device)
        real = state[i, S - n:].float()
        scale = sigma * real.norm(dim=-1, keepdim=True) / math.sqrt(E)
        out[i, S - n:] = (real + scale * z).to(state.dtype)
    return out


def splice_rows(state: torch.Tensor, lengths: Sequence[int], sources: Sequence[torch.Tensor],
                plans: Sequence[SplicePlan]) -> torch.Tensor:
    """Copy each row's planned source positions into its state (real positions, left padding)."""
    B, S, E = state.shape
    out = state.clone()
    for i, (n, src, plan) in enumerate(zip(lengths, sources, plans)):
        if plan.target_len != n or src.shape[0] != plan.source_len:
            raise ValueError(f"row {i}: the splice plan does not fit ({plan.target_len}/{n} target, "
                             f"{plan.source_len}/{src.shape[0]} source positions)")
        tgt = torch.tensor(plan.target, dtype=torch.long, device=state.device) + (S - n)
        srcpos = torch.tensor(plan.source, dtype=torch.long, device=src.device)
        out[i, tgt] = src[srcpos].to(device=state.device, dtype=state.dtype)
    return out


def make_hook(model, intervention: Intervention, seeds: Sequence[Optional[int]], *, init_scale: float = 1.0,
              splice_sources: Optional[Sequence[Optional[torch.Tensor]]] = None,
              splice_plans: Optional[Sequence[SplicePlan]] = None):
    """A ``state_hook(t, state, prompt)`` for ``model.iterate_steps`` applying ``intervention`` to every row.

    ``seeds``: each row's initial-state seed (reset's default; part of the noise seed).  For a splice,
    ``splice_sources[i]`` is row i's source state [source_len, E] (real positions) or None to take the run's own
    state at ``splice_step`` during this pass (only for splice_step <= at), and ``splice_plans[i]`` its plan.
    """
    iv = intervention
    k = iv.at
    seeds = [0 if s is None else int(s) for s in seeds]
    memo: Dict[str, object] = {}

    def hook(t: int, state: torch.Tensor, prompt) -> Optional[torch.Tensor]:
        B, S, _ = state.shape
        if len(seeds) != B:
            raise ValueError(f"the hook was built for {len(seeds)} rows, the batch has {B}")
        if iv.kind == "freeze":
            if t == k:
                memo["frozen"] = state.clone()
            return memo["frozen"] if t > k else None
        if iv.kind == "splice" and splice_sources is not None and t == iv.source_step and t <= k:
            # the run's own earlier state, for rows without an external source
            memo["own"] = state.clone()
        if t != k:
            return None
        lengths = _row_lengths(prompt, B, S)
        if iv.kind == "noise":
            return add_relative_noise(state, lengths, iv.sigma,
                                      [noise_generator_seed(iv.noise_seed, s) for s in seeds])
        if iv.kind == "reset":
            rs = seeds if iv.reset_seed is None else [int(iv.reset_seed)] * B
            return model.initial_state(prompt, init_scale, rs)
        if iv.kind == "splice":
            if splice_sources is None or splice_plans is None:
                raise ValueError("a splice hook needs splice_sources and splice_plans")
            own = memo.get("own")
            srcs = []
            for i, src in enumerate(splice_sources):
                if src is None:
                    if own is None:
                        raise ValueError("the run's own state at a later step must be captured beforehand")
                    src = own[i, S - lengths[i]:]
                srcs.append(src)
            return splice_rows(state, lengths, srcs, splice_plans)
        return None

    return hook


def _pad(id_lists: Sequence[Sequence[int]]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    B, S = len(id_lists), max(len(x) for x in id_lists)
    ids = torch.zeros((B, S), dtype=torch.long)
    mask = torch.zeros((B, S), dtype=torch.bool)
    for i, x in enumerate(id_lists):
        ids[i, S - len(x):] = torch.tensor(list(x))
        mask[i, S - len(x):] = True
    return ids, (None if bool(mask.all()) else mask)


def capture_states(model, id_lists: Sequence[Sequence[int]], step: int, seeds: Sequence[Optional[int]],
                   init_scale: float = 1.0) -> List[torch.Tensor]:
    """Each prompt's full-precision state after ``step`` steps (real positions only): one forward, no readout."""
    ids, mask = _pad(id_lists)
    seeds = [0 if s is None else int(s) for s in seeds]
    (last,) = list(model.iterate_steps(ids, step, init_scale=init_scale, seed=seeds, attention_mask=mask,
                                       readout_every_step=False))
    S = ids.shape[1]
    return [last.state[i, S - len(x):].clone() for i, x in enumerate(id_lists)]
