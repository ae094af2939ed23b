"""Our own implementation of the Huginn-0125 recurrent-depth architecture.

Written from ``shared/docs/huginn-format.md``: prelude -> (adapter + core block) x r -> coda, sandwich blocks,
RMSNorm, rotary embeddings on adjacent feature pairs, q/k bias, gated SiLU MLP, tied head.  The module names
mirror the checkpoint's key names so a state dict loads by name (see ``checkpoint.py``).

Beyond the reference forward pass this module

* handles left padding (per-row positions and a key mask), so a sequence gives the same numbers alone and
  inside a padded batch;
* takes an explicit seed (or one seed per row) for the random initial state instead of the global RNG;
* reads out the belief after *every* recurrent step in one pass (``iterate_steps``): the prelude runs once, the
  core runs K times, and each step's readout runs the coda, computing the last coda layer at the last position
  only (the only position the readout needs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PromptTooLongError

SeedArg = Union[None, int, Sequence[int]]


@dataclass
class HuginnConfig:
    n_embd: int
    n_heads: int
    intermediate_size: int
    vocab_size: int
    block_size: int
    n_layers_in_prelude: int
    n_layers_in_recurrent_block: int
    n_layers_in_coda: int
    rope_base: float = 50000.0
    norm_eps: float = 1e-6
    qk_bias: bool = True
    tie_embeddings: bool = True
    mean_recurrence: int = 32
    init_std: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_heads

    @property
    def gamma(self) -> float:
        """Embedding scale sqrt(E)."""
        return math.sqrt(self.n_embd)

    def to_json_dict(self) -> dict:
        """A config.json in Huginn's format (the keys the loader reads, plus the recognised class names)."""
        d = dict(self.extra)
        d.update(
            {
                "model_type": "huginn_raven",
                "architectures": ["RavenForCausalLM"],
                "n_embd": self.n_embd,
                "n_heads": self.n_heads,
                "num_key_value_heads": self.n_heads,
                "head_dim": self.head_dim,
                "intermediate_size": self.intermediate_size,
                "vocab_size": self.vocab_size,
                "padded_vocab_size": self.vocab_size,
                "block_size": self.block_size,
                "n_layers_in_prelude": self.n_layers_in_prelude,
                "n_layers_in_recurrent_block": self.n_layers_in_recurrent_block,
                "n_layers_in_coda": self.n_layers_in_coda,
                "n_layers": self.n_layers_in_prelude + self.n_layers_in_recurrent_block + self.n_layers_in_coda,
                "rope_base": self.rope_base,
                "norm_eps": self.norm_eps,
                "qk_bias": self.qk_bias,
                "bias": False,
                "tie_embeddings": self.tie_embeddings,
                "tie_word_embeddings": self.tie_embeddings,
                "block_class_name": "SandwichBlock",
                "norm_class_name": "RMSNorm_llama",
                "mlp_class_name": "GatedMLP",
                "nonlin_name": "SiLU",
                "injection_type": "linear",
                "state_init": "like-init",
                "mean_recurrence": self.mean_recurrence,
                "init_values": {
                    "std": self.init_std,
                    "embedding": self.init_std,
                    "embed_scale": self.gamma,
                },
            }
        )
        return d


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.to(x.dtype) * self.weight


def rope_tables(positions: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [B, S, 1, hd/2] (float32) for integer positions [B, S]."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim)
    angles = positions.to(torch.float32)[..., None] * inv_freq  # [B, S, hd/2]
    return torch.cos(angles)[:, :, None, :], torch.sin(angles)[:, :, None, :]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent feature pairs (2i, 2i+1) of x [B, S, H, hd] in float32."""
    xf = x.float().unflatten(-1, (-1, 2))
    a, b = xf[..., 0], xf[..., 1]
    out = torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)
    return out.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: HuginnConfig):
        super().__init__()
        E, H = cfg.n_embd, cfg.n_heads
        self.n_heads, self.head_dim = H, cfg.head_dim
        self.Wqkv = nn.Linear(E, 3 * E, bias=False)
        self.proj = nn.Linear(E, E, bias=False)
        if cfg.qk_bias:
            self.qk_bias = nn.Parameter(torch.zeros(2, 1, H, cfg.head_dim))
        else:
            self.register_parameter("qk_bias", None)

    def forward(self, x: torch.Tensor, ctx: "Context", last_only: bool = False) -> torch.Tensor:
        B, S, E = x.shape
        qkv = self.Wqkv(x).view(B, S, 3, self.n_heads, self.head_dim)
        q, k, v = qkv.unbind(2)
        if self.qk_bias is not None:
            q = q + self.qk_bias[0]
            k = k + self.qk_bias[1]
        k = apply_rope(k, ctx.cos, ctx.sin)
        if last_only:
            q = apply_rope(q[:, -1:], ctx.cos[:, -1:], ctx.sin[:, -1:])
            mask = ctx.last_mask
        else:
            q = apply_rope(q, ctx.cos, ctx.sin)
            mask = ctx.mask
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=not last_only)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(B, q.shape[2], E)
        return self.proj(y)


class GatedMLP(nn.Module):
    def __init__(self, cfg: HuginnConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 2 * cfg.intermediate_size, bias=False)
        self.proj = nn.Linear(cfg.intermediate_size, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, u = self.fc(x).chunk(2, dim=-1)
        return self.proj(F.silu(g) * u)


class SandwichBlock(nn.Module):
    def __init__(self, cfg: HuginnConfig):
        super().__init__()
        self.norm_1 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.norm_2 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.norm_3 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = GatedMLP(cfg)
        self.norm_4 = RMSNorm(cfg.n_embd, cfg.norm_eps)

    def forward(self, x: torch.Tensor, ctx: "Context", last_only: bool = False) -> torch.Tensor:
        a = self.attn(self.norm_1(x), ctx, last_only=last_only)
        if last_only:
            x = x[:, -1:]
        x = self.norm_2(x + a)
        return self.norm_4(x + self.mlp(self.norm_3(x)))


@dataclass
class Context:
    """Per-call positional data shared by every block: RoPE tables and attention masks."""

    cos: torch.Tensor
    sin: torch.Tensor
    mask: Optional[torch.Tensor]  # [B, 1, S, S] bool (True = attend) or None for plain causal
    last_mask: Optional[torch.Tensor]  # [B, 1, 1, S] for the last query row, or None (attend to all)


@dataclass
class Prompt:
    """An encoded prompt: the prelude's output ``e`` and what every step needs to attend over it."""

    e: torch.Tensor  # [B, S, E]
    ctx: Context
    attention_mask: Optional[torch.Tensor]  # [B, S] (1 = real token, left padding) or None


StateHook = Callable[[int, torch.Tensor, "Prompt"], Optional[torch.Tensor]]


@dataclass
class StepOutput:
    """What one recurrent step yields: the step number, the state and the last-position readout."""

    step: int  # 1-based
    state: torch.Tensor  # [B, S, E] latent state s_t, model dtype
    logprobs: torch.Tensor  # [B, V] float32 log-softmax at the last position


class HuginnModel(nn.Module):
    """Huginn-format looped LM. Parameter names match the checkpoint keys."""

    def __init__(self, cfg: HuginnConfig):
        super().__init__()
        self.config = cfg
        E = cfg.n_embd
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, E),
                prelude=nn.ModuleList(SandwichBlock(cfg) for _ in range(cfg.n_layers_in_prelude)),
                adapter=nn.Linear(2 * E, E, bias=False),
                core_block=nn.ModuleList(SandwichBlock(cfg) for _ in range(cfg.n_layers_in_recurrent_block)),
                coda=nn.ModuleList(SandwichBlock(cfg) for _ in range(cfg.n_layers_in_coda)),
                ln_f=RMSNorm(E, cfg.norm_eps),
            )
        )
        self.lm_head = nn.Linear(E, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        return self.transformer.wte.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.wte.weight.dtype

    def encode(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> "Prompt":
        """Run the prelude once: the prompt's embedding ``e`` and its positional context, reused by every step."""
        ctx = self._context(input_ids, attention_mask)
        x = self.transformer.wte(input_ids) * self.config.gamma
        for block in self.transformer.prelude:
            x = block(x, ctx)
        return Prompt(e=x, ctx=ctx, attention_mask=attention_mask)

    def _context(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor]) -> Context:
        B, S = input_ids.shape
        dev = input_ids.device
        if S > self.config.block_size:
            raise PromptTooLongError(
                f"the prompt has {S} tokens but the model's context (block_size) is {self.config.block_size}: "
                "shorten the question or options"
            )
        if attention_mask is None or bool(attention_mask.all()):
            positions = torch.arange(S, device=dev).expand(B, S)
            mask = last_mask = None
        else:
            am = attention_mask.to(torch.bool)
            if not bool(am[:, -1].all()):
                raise ValueError("padded batches must be left-padded: the last position of every row must be real")
            positions = (am.long().cumsum(-1) - 1).clamp(min=0)
            causal = torch.ones(S, S, dtype=torch.bool, device=dev).tril()
            eye = torch.eye(S, dtype=torch.bool, device=dev)
            # Real queries attend to real keys at or before them; a pad query attends to itself only, so that
            # no softmax row is empty (pad outputs are never read).
            mask = (causal[None] & am[:, None, :]) | eye[None]
            mask = mask[:, None]
            last_mask = am[:, None, None, :]
        cos, sin = rope_tables(positions, self.config.head_dim, self.config.rope_base)
        return Context(cos=cos, sin=sin, mask=mask, last_mask=last_mask)

    def initial_state(self, prompt: "Prompt", init_scale: float = 1.0, seed: SeedArg = None) -> torch.Tensor:
        """s_0: truncated normal (+-3 std), std = init_values.std * init_scale, times gamma; zeros for scale 0.

        Noise is drawn on the CPU in float32 from an explicit generator, one generator per row, for that row's
        real (unpadded) positions only: a row gets the same s_0 alone or inside a padded batch, on any device.
        ``seed`` is one int (every row uses it), one int per row, or None (a fresh random seed).
        """
        like, attention_mask = prompt.e, prompt.attention_mask
        B, S, E = like.shape
        if init_scale == 0.0 or self.config.init_std == 0.0:
            return torch.zeros_like(like)
        if seed is None:
            seeds = [int(torch.randint(0, 2**31 - 1, ()).item())] * B
        elif isinstance(seed, int):
            seeds = [seed] * B
        else:
            seeds = [int(s) for s in seed]
            if len(seeds) != B:
                raise ValueError(f"got {len(seeds)} seeds for a batch of {B}")
        lengths = [S] * B if attention_mask is None else attention_mask.sum(-1).tolist()
        std = self.config.init_std * init_scale
        out = torch.zeros(B, S, E, dtype=torch.float32)
        for i, (s, n) in enumerate(zip(seeds, lengths)):
            g = torch.Generator().manual_seed(s)
            noise = torch.empty(int(n), E, dtype=torch.float32)
            nn.init.trunc_normal_(noise, mean=0.0, std=std, a=-3 * std, b=3 * std, generator=g)
            out[i, S - int(n):] = noise
        return (out * self.config.gamma).to(device=like.device, dtype=like.dtype)

    def step(self, state: torch.Tensor, prompt: "Prompt") -> torch.Tensor:
        """One recurrent iteration: s_t = core(adapter([s_{t-1}, e]))."""
        x = self.transformer.adapter(torch.cat([state, prompt.e], dim=-1))
        for block in self.transformer.core_block:
            x = block(x, prompt.ctx)
        return x

    def readout(self, state: torch.Tensor, prompt: "Prompt") -> torch.Tensor:
        """Log-probs [B, V] (float32) at the last position: ln_f(coda(ln_f(s))) @ wte^T.

        Identical to running the coda on every position and reading the last one; the last coda layer is
        computed for the last query only (its keys and values still come from every position).
        """
        x = self.transformer.ln_f(state)
        coda = self.transformer.coda
        for i, block in enumerate(coda):
            x = block(x, prompt.ctx, last_only=(i == len(coda) - 1))
        if len(coda) == 0:
            x = x[:, -1:]
        h = self.transformer.ln_f(x[:, -1])
        logits = F.linear(h.float(), self.lm_head.weight.float()) if h.dtype != torch.float32 else self.lm_head(h)
        return torch.log_softmax(logits.float(), dim=-1)

    def readout_all(self, state: torch.Tensor, prompt: "Prompt") -> torch.Tensor:
        """Logits [B, S, V] (float32) at every position (training and reference checks)."""
        x = self.transformer.ln_f(state)
        for block in self.transformer.coda:
            x = block(x, prompt.ctx)
        return self.lm_head(self.transformer.ln_f(x)).float()

    # ------------------------------------------------------------------ public API
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
        for t in range(1, num_steps + 1):
            state = self.step(state, prompt)
            if state_hook is not None:
                replaced = state_hook(t, state, prompt)
                if replaced is not None:
                    state = replaced
            if readout_every_step or t == num_steps:
                yield StepOutput(step=t, state=state, logprobs=self.readout(state, prompt))

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

        One forward: the prelude runs once and the core num_steps times.  With ``init_scale=0`` it is
        deterministic and row t-1 equals a run with t steps; with a seed it is reproducible.
        """
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

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
