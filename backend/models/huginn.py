"""Huginn-0125 (recurrent depth, Geiping et al. 2025), written from ``shared/docs/huginn-format.md``.

prelude -> (adapter([s, e]) + core blocks) x r -> ln_f, coda, ln_f, tied head.  Sandwich blocks (each residual
sum normalised again), RMSNorm, rotary embeddings on adjacent feature pairs, q/k bias, gated SiLU MLP.  Module
names mirror the checkpoint's keys, so a state dict loads by name (see ``checkpoint.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelFormatError
from .base import ConfigReader, LoopedConfig, LoopedModel, Prompt, StateHook, StepOutput, last_position_logprobs
from .layers import Context, RMSNorm, SeedArg, attend, inv_frequencies, make_context, rope_pairs, \
    truncated_normal_state

__all__ = ["HuginnConfig", "HuginnModel", "Prompt", "StepOutput", "StateHook", "Context"]


@dataclass
class HuginnConfig(LoopedConfig):
    family = "huginn"
    family_title = "Huginn (recurrent depth)"

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

    @property
    def default_steps(self) -> int:
        return self.mean_recurrence

    def layer_counts(self) -> Dict[str, Tuple[str, int]]:
        return {"transformer.prelude": ("n_layers_in_prelude", self.n_layers_in_prelude),
                "transformer.core_block": ("n_layers_in_recurrent_block", self.n_layers_in_recurrent_block),
                "transformer.coda": ("n_layers_in_coda", self.n_layers_in_coda)}

    # Values this implementation computes; any other is refused rather than silently computed differently.
    IMPLEMENTED = {"block_class_name": "SandwichBlock", "norm_class_name": "RMSNorm_llama",
                   "mlp_class_name": "GatedMLP", "injection_type": "linear", "nonlin_name": "SiLU"}

    @classmethod
    def from_config_dict(cls, raw: dict, where: str = "config.json", tensor_names=None) -> "HuginnConfig":
        c = ConfigReader(raw, where)
        for key, want in cls.IMPLEMENTED.items():
            c.expect(key, want, default=want)
        c.expect("bias", False, default=False)
        E, H = c.int("n_embd"), c.int("n_heads")
        if E % H:
            raise ModelFormatError(f"{where}: n_embd={E} is not divisible by n_heads={H}")
        if (E // H) % 2:
            raise ModelFormatError(f"{where}: head_dim={E // H} must be even for rotary embeddings")
        kv = c.int("num_key_value_heads", H)
        if kv != H:
            raise ModelFormatError(f"{where}: num_key_value_heads={kv}: grouped KV heads are not implemented "
                                   "for Huginn-0125 blocks")
        vocab = c.int("padded_vocab_size") if raw.get("padded_vocab_size") else c.int("vocab_size")
        init = c.dict("init_values", None) or {}
        init_std = ConfigReader(init, f"{where}: init_values").float("std", math.sqrt(2 / (5 * E)), positive=False)
        return cls(
            n_embd=E, n_heads=H, intermediate_size=c.int("intermediate_size"), vocab_size=vocab,
            block_size=c.int("block_size"),
            n_layers_in_prelude=c.int("n_layers_in_prelude", minimum=0),
            n_layers_in_recurrent_block=c.int("n_layers_in_recurrent_block"),
            n_layers_in_coda=c.int("n_layers_in_coda", minimum=0),
            rope_base=c.float("rope_base", 50000.0), norm_eps=c.float("norm_eps", 1e-6),
            qk_bias=c.bool("qk_bias", True),
            tie_embeddings=c.bool("tie_embeddings", c.bool("tie_word_embeddings", True)),
            mean_recurrence=c.int("mean_recurrence", 32), init_std=init_std,
        )

    def to_config_dict(self) -> dict:
        """config.json in Huginn's format (the keys the loader reads, plus the recognised class names)."""
        d = dict(self.extra)
        d.update({
            "model_type": "huginn_raven", "architectures": ["RavenForCausalLM"],
            "n_embd": self.n_embd, "n_heads": self.n_heads, "num_key_value_heads": self.n_heads,
            "head_dim": self.head_dim, "intermediate_size": self.intermediate_size,
            "vocab_size": self.vocab_size, "padded_vocab_size": self.vocab_size, "block_size": self.block_size,
            "n_layers_in_prelude": self.n_layers_in_prelude,
            "n_layers_in_recurrent_block": self.n_layers_in_recurrent_block,
            "n_layers_in_coda": self.n_layers_in_coda,
            "n_layers": self.n_layers_in_prelude + self.n_layers_in_recurrent_block + self.n_layers_in_coda,
            "rope_base": self.rope_base, "norm_eps": self.norm_eps, "qk_bias": self.qk_bias, "bias": False,
            "tie_embeddings": self.tie_embeddings, "tie_word_embeddings": self.tie_embeddings,
            **self.IMPLEMENTED, "state_init": "like-init", "mean_recurrence": self.mean_recurrence,
            "init_values": {"std": self.init_std, "embedding": self.init_std, "embed_scale": self.gamma},
        })
        return d


def rope_table_buffer(block_size: int, head_dim: int, base: float) -> torch.Tensor:
    ang = torch.arange(block_size, dtype=torch.float32)[:, None] * inv_frequencies(head_dim, base)
    return torch.stack([ang.cos(), ang.sin()], dim=-1)[None, :, None]


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

    def forward(self, x: torch.Tensor, ctx: Context, last_only: bool = False) -> torch.Tensor:
        B, S, _ = x.shape
        q, k, v = self.Wqkv(x).view(B, S, 3, self.n_heads, self.head_dim).unbind(2)
        if self.qk_bias is not None:
            q, k = q + self.qk_bias[0], k + self.qk_bias[1]
        k = rope_pairs(k, ctx.cos, ctx.sin)
        if last_only:
            q = rope_pairs(q[:, -1:], ctx.cos[:, -1:], ctx.sin[:, -1:])
        else:
            q = rope_pairs(q, ctx.cos, ctx.sin)
        return self.proj(attend(q, k, v, ctx, last_only))


class GatedMLP(nn.Module):
    def __init__(self, E: int, I: int):
        super().__init__()
        self.fc = nn.Linear(E, 2 * I, bias=False)
        self.proj = nn.Linear(I, E, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, u = self.fc(x).chunk(2, dim=-1)
        return self.proj(F.silu(g) * u)


class SandwichBlock(nn.Module):
    def __init__(self, cfg: HuginnConfig):
        super().__init__()
        E = cfg.n_embd
        self.norm_1 = RMSNorm(E, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.norm_2 = RMSNorm(E, cfg.norm_eps)
        self.norm_3 = RMSNorm(E, cfg.norm_eps)
        self.mlp = GatedMLP(E, cfg.intermediate_size)
        self.norm_4 = RMSNorm(E, cfg.norm_eps)

    def forward(self, x: torch.Tensor, ctx: Context, last_only: bool = False) -> torch.Tensor:
        a = self.attn(self.norm_1(x), ctx, last_only=last_only)
        if last_only:
            x = x[:, -1:]
        x = self.norm_2(x + a)
        return self.norm_4(x + self.mlp(self.norm_3(x)))


class RavenModel(LoopedModel):
    """The ``huginn_raven`` layout shared by Huginn and the retrofitted-recurrence models: embedding, prelude,
    concat adapter, core block, coda, final norm, head; parameter names match the checkpoint keys.  Subclasses
    give the block class and their own encode / initial_state / readout."""

    def __init__(self, cfg, block: Callable[[object], nn.Module]):
        super().__init__()
        self.config = cfg
        E = cfg.n_embd
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, E),
            prelude=nn.ModuleList(block(cfg) for _ in range(cfg.n_layers_in_prelude)),
            adapter=nn.Linear(2 * E, E, bias=False),
            core_block=nn.ModuleList(block(cfg) for _ in range(cfg.n_layers_in_recurrent_block)),
            coda=nn.ModuleList(block(cfg) for _ in range(cfg.n_layers_in_coda)),
            ln_f=RMSNorm(E, cfg.norm_eps),
        ))
        self.lm_head = nn.Linear(E, cfg.vocab_size, bias=False)
        self.tie_weights()

    def tie_weights(self) -> None:
        if self.config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight

    def step(self, state: torch.Tensor, prompt: Prompt) -> torch.Tensor:
        """One recurrent iteration: s_t = core(adapter([s_{t-1}, e]))."""
        x = self.transformer.adapter(torch.cat([state, prompt.e], dim=-1))
        for block in self.transformer.core_block:
            x = block(x, prompt.ctx)
        return x


class HuginnModel(RavenModel):
    """Huginn-format looped LM. Parameter names match the checkpoint keys."""

    def __init__(self, cfg: HuginnConfig):
        super().__init__(cfg, SandwichBlock)

    OPTIONAL_TENSORS = ("freqs_cis",)

    def release_extras(self) -> Dict[str, torch.Tensor]:
        """Huginn's stored RoPE table ``freqs_cis`` [1, block_size, 1, hd/2, 2] (cos, sin); never read back."""
        return {"freqs_cis": rope_table_buffer(self.config.block_size, self.config.head_dim, self.config.rope_base)}

    def encode(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> Prompt:
        """Run the prelude once: the prompt's embedding ``e`` and its positional context, reused by every step."""
        cfg = self.config
        ctx = make_context(input_ids, attention_mask, cfg.block_size, inv_frequencies(cfg.head_dim, cfg.rope_base))
        x = self.transformer.wte(input_ids) * cfg.gamma
        for block in self.transformer.prelude:
            x = block(x, ctx)
        return Prompt(e=x, ctx=ctx, attention_mask=attention_mask)

    def initial_state(self, prompt: Prompt, init_scale: float = 1.0, seed: SeedArg = None) -> torch.Tensor:
        """s_0: truncated normal (+-3 std), std = init_values.std * init_scale, times gamma; zeros for scale 0."""
        return truncated_normal_state(prompt.e, prompt.attention_mask, self.config.init_std * init_scale,
                                      self.config.gamma, seed)

    def readout(self, state: torch.Tensor, prompt: Prompt) -> torch.Tensor:
        """Log-probs [B, V] (float32) at the last position: ln_f(coda(ln_f(s))) @ wte^T.

        The last coda layer is computed for the last query only (its keys and values still come from every
        position): identical to running the coda on every position and reading the last one."""
        x = self.transformer.ln_f(state)
        coda = self.transformer.coda
        for i, block in enumerate(coda):
            x = block(x, prompt.ctx, last_only=(i == len(coda) - 1))
        h = self.transformer.ln_f(x[:, -1])
        return last_position_logprobs(h, self.lm_head.weight)

    def readout_all(self, state: torch.Tensor, prompt: Prompt) -> torch.Tensor:
        """Logits [B, S, V] (float32) at every position (training and reference checks)."""
        x = self.transformer.ln_f(state)
        for block in self.transformer.coda:
            x = block(x, prompt.ctx)
        return self.lm_head(self.transformer.ln_f(x)).float()
