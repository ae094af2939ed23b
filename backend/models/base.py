"""The looped-model interface every family implements, and the run loop written once on top of it.

A family (``huginn.py``, ``retrofit.py``, ``ouro.py``, ``parcae.py``) is a config dataclass and an ``nn.Module``
with five methods:

``encode(input_ids, attention_mask) -> Prompt``   everything computed once per prompt (embedding, prelude)
``initial_state(prompt, init_scale, seed)``       s_0 (random with an explicit per-row seed, or deterministic)
``step(state, prompt)``                           one recurrent step s_{t-1} -> s_t
``readout(state, prompt)``                        [B, V] float32 log-probs at the last position after a step
``readout_all(state, prompt)``                    [B, S, V] float32 logits at every position (training)

and optionally ``exit_gate(state, prompt)`` (Ouro: the per-step exit probability).  :class:`LoopedModel` turns
these into the one way in, :meth:`LoopedModel.iterate_steps`, plus ``step_logprobs`` and ``forward``.
"""
from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Dict, Iterator, Optional, Tuple

import torch
from torch import nn

from ..errors import ModelFormatError
from .layers import Context, SeedArg


# ------------------------------------------------------------------------------------------------ config
class ConfigReader:
    """Typed access to a raw config.json dict: a missing or wrong-typed value is one line naming the key."""

    def __init__(self, raw: dict, where: str = "config.json"):
        if not isinstance(raw, dict):
            raise ModelFormatError(f"{where}: must hold a JSON object, got {type(raw).__name__}")
        self.raw, self.where = raw, where

    def _fail(self, key: str, want: str, got: Any) -> ModelFormatError:
        return ModelFormatError(f"{self.where}: {key} must be {want}, got {json_repr(got)}")

    def has(self, key: str) -> bool:
        return key in self.raw

    def int(self, key: str, default: Any = ..., minimum: int = 1, maximum: int = 2**31) -> int:
        v = self._get(key, default)
        whole = isinstance(v, int) or (isinstance(v, float) and math.isfinite(v) and v.is_integer())
        if isinstance(v, bool) or not whole:
            raise self._fail(key, f"a whole number >= {minimum}", v)
        if not minimum <= v <= maximum:
            raise self._fail(key, f"a whole number between {minimum} and {maximum}", v)
        return int(v)

    def float(self, key: str, default: Any = ..., positive: bool = True) -> float:
        v = self._get(key, default)
        try:
            f = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
        except OverflowError:
            f = None
        if f is None or not math.isfinite(f) or (positive and f <= 0):
            raise self._fail(key, "a positive number" if positive else "a finite number", v)
        return f

    def bool(self, key: str, default: Any = ...) -> bool:
        v = self._get(key, default)
        if not isinstance(v, bool):
            raise self._fail(key, "true or false", v)
        return v

    def str(self, key: str, default: Any = ...) -> Optional[str]:
        v = self._get(key, default)
        if v is not None and not isinstance(v, str):
            raise self._fail(key, "a string", v)
        return v

    def dict(self, key: str, default: Any = ...) -> Optional[dict]:
        v = self._get(key, default)
        if v is not None and not isinstance(v, dict):
            raise self._fail(key, "a JSON object", v)
        return v

    def expect(self, key: str, allowed, default: Any = ...) -> Any:
        """A value this implementation computes; anything else is refused rather than computed differently."""
        v = self._get(key, default)
        allowed = allowed if isinstance(allowed, (tuple, list, set)) else (allowed,)
        if v not in allowed:
            want = " or ".join(json_repr(a) for a in allowed)
            raise ModelFormatError(
                f"{self.where}: {key}={json_repr(v)} is not implemented (only {want}); refusing to compute "
                "something else")
        return v

    def _get(self, key: str, default: Any) -> Any:
        if key in self.raw:
            return self.raw[key]
        if default is ...:
            raise ModelFormatError(f"{self.where}: missing required key {key}")
        return default


def json_repr(v: Any) -> str:
    """A short rendering of a config value for a one-line message."""
    try:
        s = json.dumps(v)
    except (TypeError, ValueError):
        s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


@dataclass
class LoopedConfig:
    """Base of the per-family config dataclasses (each mirrors its release's ``config.json`` keys).

    Every family exposes ``n_embd`` (width of the state), ``vocab_size``, ``block_size`` (context the model
    reads), ``intermediate_size`` and ``default_steps`` (its trained/default depth), under these names."""

    family: ClassVar[str] = ""
    family_title: ClassVar[str] = ""

    @classmethod
    def from_config_dict(cls, raw: dict, where: str = "config.json", tensor_names=None) -> "LoopedConfig":
        """Validate the release's config dict (refusing, with the key named, what is not implemented); the
        checkpoint's tensor names, when known, settle variants the config does not name."""
        raise NotImplementedError

    def to_config_dict(self) -> dict:
        raise NotImplementedError

    def layer_counts(self) -> Dict[str, Tuple[str, int]]:
        """Checkpoint key prefix -> (config key, number of numbered blocks under that prefix).

        Checked against the weights' header before anything is built, so a config claiming 100,000 layers is
        refused in milliseconds."""
        return {}

    @property
    def default_steps(self) -> int:
        raise NotImplementedError


# ------------------------------------------------------------------------------------------------ model
@dataclass
class Prompt:
    """An encoded prompt: what every step reads (``e``: the embedding or prelude output) and its context."""

    e: torch.Tensor  # [B, S, E]
    ctx: Optional[Context]
    attention_mask: Optional[torch.Tensor]  # [B, S] (1 = real token, left padding) or None


StateHook = Callable[[int, torch.Tensor, Prompt], Optional[torch.Tensor]]


@dataclass
class StepOutput:
    """What one recurrent step yields.

    ``exit_gate`` / ``exit_prob`` are set by families with an exit gate (Ouro), else None: the gate's own
    probability of stopping at this step (lambda_t, at the last position) and the probability that a run of
    ``num_steps`` steps exits at this step (lambda_t times the survival so far; the last step takes the rest)."""

    step: int  # 1-based
    state: torch.Tensor  # [B, S, E] latent state s_t, model dtype
    logprobs: torch.Tensor  # [B, V] float32 log-softmax at the last position
    exit_gate: Optional[torch.Tensor] = None  # [B] float32
    exit_prob: Optional[torch.Tensor] = None  # [B] float32


class LoopedModel(nn.Module, ABC):
    """A looped LM: the four family methods plus the one run loop (``iterate_steps``) built on them."""

    config: LoopedConfig

    # ------------------------------------------------------------------ what a family implements
    @abstractmethod
    def encode(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> Prompt: ...

    @abstractmethod
    def initial_state(self, prompt: Prompt, init_scale: float = 1.0, seed: SeedArg = None) -> torch.Tensor: ...

    @abstractmethod
    def step(self, state: torch.Tensor, prompt: Prompt) -> torch.Tensor: ...

    @abstractmethod
    def readout(self, state: torch.Tensor, prompt: Prompt) -> torch.Tensor: ...

    @abstractmethod
    def readout_all(self, state: torch.Tensor, prompt: Prompt) -> torch.Tensor: ...

    def exit_gate(self, state: torch.Tensor, prompt: Prompt) -> Optional[torch.Tensor]:
        """[B] float32 probability of exiting after this step (at the last position), or None (no gate)."""
        return None

    # ------------------------------------------------------------------ checkpoint hooks
    OPTIONAL_TENSORS: ClassVar[Tuple[str, ...]] = ()  # stored by the release but not used (recomputed)
    EMBED_KEY: ClassVar[str] = "transformer.wte.weight"  # what a tied lm_head.weight is a copy of

    def tie_weights(self) -> None:
        """Point a tied head at the embedding again (after loading by name)."""

    def release_extras(self) -> Dict[str, torch.Tensor]:
        """Tensors the release's files hold beyond the parameters (e.g. a RoPE table), for writing checkpoints."""
        return {}

    def init_extra(self, generator: torch.Generator) -> None:
        """Family-specific adjustments after ``checkpoint.init_weights`` (e.g. decay rates in a sane range)."""

    # ------------------------------------------------------------------ shared
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self) -> int:
        """Distinct parameters (a tied head counts once)."""
        return sum(p.numel() for p in self.parameters())

    @torch.inference_mode()
    def iterate_steps(
        self,
        input_ids: torch.Tensor,
        num_steps: int,
        *,
        init_scale: float = 1.0,
        seed: SeedArg = None,
        attention_mask: Optional[torch.Tensor] = None,
        readout_every_step: bool = True,
        state_hook: Optional[StateHook] = None,
    ) -> Iterator[StepOutput]:
        """Run the recurrence and yield each step's state and last-position readout, one step at a time.

        ``state_hook(t, state, prompt)`` (optional) may return a replacement for s_t before step t's readout
        (interventions); returning None keeps the state.  With ``readout_every_step=False`` only the last step
        is read out (a plain K-step forward).
        """
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        input_ids = input_ids.to(self.device)
        if attention_mask is not None:
            attention_mask = attention_mask.to(self.device)
        prompt = self.encode(input_ids, attention_mask)
        state = self.initial_state(prompt, init_scale, seed)
        survival = None
        for t in range(1, num_steps + 1):
            state = self.step(state, prompt)
            if state_hook is not None:
                replaced = state_hook(t, state, prompt)
                if replaced is not None:
                    state = replaced
            gate = self.exit_gate(state, prompt)
            exit_prob = None
            if gate is not None:
                survival = torch.ones_like(gate) if survival is None else survival
                exit_prob = survival if t == num_steps else gate * survival
                survival = survival * (1 - gate)
            if readout_every_step or t == num_steps:
                yield StepOutput(step=t, state=state, logprobs=self.readout(state, prompt), exit_gate=gate,
                                 exit_prob=exit_prob)

    def step_logprobs(
        self,
        input_ids: torch.Tensor,
        num_steps: int,
        *,
        init_scale: float = 1.0,
        seed: SeedArg = None,
        attention_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Log-softmax of the readout at the last position after each step 1..num_steps: [B, num_steps, V].

        One forward: the prompt is encoded once and the core runs num_steps times.  With ``init_scale=0`` (or a
        family without a random state) it is deterministic and row t-1 equals a run with t steps."""
        outs = [o.logprobs for o in self.iterate_steps(
            input_ids, num_steps, init_scale=init_scale, seed=seed, attention_mask=attention_mask)]
        return torch.stack(outs, dim=1)

    def forward(
        self,
        input_ids: torch.Tensor,
        num_steps: int,
        *,
        init_scale: float = 1.0,
        seed: SeedArg = None,
        attention_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Full-sequence logits [B, S, V] after num_steps steps (with gradients; used by training)."""
        prompt = self.encode(input_ids, attention_mask)
        state = self.initial_state(prompt, init_scale, seed)
        for _ in range(num_steps):
            state = self.step(state, prompt)
        return self.readout_all(state, prompt)


def last_position_logprobs(h: torch.Tensor, head_weight: torch.Tensor, scale: float = 1.0,
                           softcap: Optional[float] = None) -> torch.Tensor:
    """[B, E] hidden -> [B, V] float32 log-softmax of ``h @ W^T`` computed in float32."""
    logits = h.float() @ head_weight.float().T
    if scale != 1.0:
        logits = logits * scale
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    return torch.log_softmax(logits, dim=-1)
