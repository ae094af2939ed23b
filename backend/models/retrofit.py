"""Retrofitted recurrence (McLeish et al. 2025): Llama-3.2 / TinyLlama / OLMo-2 cut into prelude, recurrent core
and coda, in Huginn's ``huginn_raven`` wrapper.  Written from ``shared/docs/retrofit-format.md``.

prelude -> (adapter([s, e]) + core blocks) x r -> coda, ln_f (once), untied head.  The blocks are the source
model's: Llama pre-norm (``x + attn(norm_1 x)``; ``x + mlp(norm_2 x)``) with grouped KV heads and Llama-3 RoPE
scaling, or OLMo-2 post-norm (``x + norm_1(attn x)``) with q/k RMSNorm over the whole projection.  Module
names mirror the checkpoint's keys.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ..errors import ModelFormatError
from .base import ConfigReader, LoopedConfig, Prompt, last_position_logprobs
from .huginn import GatedMLP, RavenModel
from .layers import Context, RMSNorm, SeedArg, attend, inv_frequencies, make_context, rope_half, \
    truncated_normal_state

LLAMA, OLMO2 = "llama", "olmo2"
# The source model's special-token ids are not in config.json (it carries Huginn's): the tokenizer files say.
HUGINN_IDS = {"bos_token_id": 65504, "eos_token_id": 65505, "pad_token_id": 65509}


@dataclass
class RetrofitConfig(LoopedConfig):
    family = "retrofit"
    family_title = "Retrofitted recurrence"

    n_embd: int
    n_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    block_size: int
    n_layers_in_prelude: int
    n_layers_in_recurrent_block: int
    n_layers_in_coda: int
    rope_theta: float = 500000.0
    rope_scaling: Optional[dict] = None  # {"rope_type": "llama3", factor, low/high_freq_factor, original_max...}
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    mean_recurrence: int = 16
    init_std: float = 0.0
    embed_scale: float = 1.0
    block_type: str = LLAMA  # "llama" (Llama / TinyLlama) or "olmo2"
    extra: dict = field(default_factory=dict)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_heads

    @property
    def default_steps(self) -> int:
        return self.mean_recurrence

    def layer_counts(self) -> Dict[str, Tuple[str, int]]:
        return {"transformer.prelude": ("n_layers_in_prelude", self.n_layers_in_prelude),
                "transformer.core_block": ("n_layers_in_recurrent_block", self.n_layers_in_recurrent_block),
                "transformer.coda": ("n_layers_in_coda", self.n_layers_in_coda)}

    @classmethod
    def from_config_dict(cls, raw: dict, where: str = "config.json", tensor_names=None) -> "RetrofitConfig":
        c = ConfigReader(raw, where)
        c.expect("injection_type", "linear", default="linear")
        c.expect("mlp_class_name", "GatedMLP", default="GatedMLP")
        c.expect("nonlin_name", "SiLU", default="SiLU")
        c.expect("bias", False, default=False)
        c.expect("qk_bias", False, default=False)
        E, H = c.int("n_embd"), c.int("n_heads")
        KV = c.int("num_key_value_heads", H)
        if E % H or (E // H) % 2:
            raise ModelFormatError(f"{where}: n_embd={E} must be n_heads={H} times an even head_dim")
        if c.has("head_dim") and c.int("head_dim") != E // H:
            raise ModelFormatError(f"{where}: head_dim={raw['head_dim']} is not n_embd / n_heads = {E // H}")
        if H % KV:
            raise ModelFormatError(f"{where}: n_heads={H} is not a multiple of num_key_value_heads={KV}")
        scaling = c.dict("rope_scaling", None)
        if scaling is not None:
            s = ConfigReader(scaling, f"{where}: rope_scaling")
            s.expect("rope_type", "llama3", default=scaling.get("type"))
            scaling = {"rope_type": "llama3", "factor": s.float("factor"),
                       "low_freq_factor": s.float("low_freq_factor"), "high_freq_factor": s.float("high_freq_factor"),
                       "original_max_position_embeddings": s.int("original_max_position_embeddings")}
            if scaling["high_freq_factor"] <= scaling["low_freq_factor"]:
                raise ModelFormatError(f"{where}: rope_scaling.high_freq_factor must exceed low_freq_factor")
        names = list(tensor_names or ())
        block_type = OLMO2 if any(n.endswith("attn.q_norm.weight") for n in names) else LLAMA
        if block_type == OLMO2 and scaling is not None:
            raise ModelFormatError(f"{where}: rope_scaling with OLMo-2 blocks (attn.q_norm) is not implemented")
        init = c.dict("init_values", None) or {}
        ir = ConfigReader(init, f"{where}: init_values")
        vocab = c.int("padded_vocab_size") if raw.get("padded_vocab_size") else c.int("vocab_size")
        theta_key = "rope_theta" if c.has("rope_theta") else "rope_base"
        return cls(
            n_embd=E, n_heads=H, num_key_value_heads=KV, intermediate_size=c.int("intermediate_size"),
            vocab_size=vocab, block_size=c.int("block_size"),
            n_layers_in_prelude=c.int("n_layers_in_prelude", minimum=0),
            n_layers_in_recurrent_block=c.int("n_layers_in_recurrent_block"),
            n_layers_in_coda=c.int("n_layers_in_coda", minimum=0),
            rope_theta=c.float(theta_key), rope_scaling=scaling, norm_eps=c.float("norm_eps", 1e-5),
            tie_embeddings=c.bool("tie_embeddings", c.bool("tie_word_embeddings", False)),
            mean_recurrence=c.int("mean_recurrence", 16),
            init_std=ir.float("std", math.sqrt(2 / (5 * E)), positive=False),
            embed_scale=ir.float("embed_scale", 1.0), block_type=block_type,
        )

    def to_config_dict(self) -> dict:
        """config.json with the key set the authors' conversion writes (no ``tie_word_embeddings``: their config
        class crashes on it; Huginn's special-token ids, as in the release)."""
        d = dict(self.extra)
        d.update({
            "model_type": "huginn_raven", "architectures": ["RavenForCausalLM"],
            "n_embd": self.n_embd, "n_heads": self.n_heads, "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim, "intermediate_size": self.intermediate_size,
            "vocab_size": self.vocab_size, "padded_vocab_size": self.vocab_size, "block_size": self.block_size,
            "max_position_embeddings": 131072,
            "n_layers_in_prelude": self.n_layers_in_prelude,
            "n_layers_in_recurrent_block": self.n_layers_in_recurrent_block,
            "n_layers_in_coda": self.n_layers_in_coda,
            "n_layers": self.n_layers_in_prelude + self.n_layers_in_recurrent_block + self.n_layers_in_coda,
            "rope_theta": self.rope_theta, "rope_base": self.rope_theta, "norm_eps": self.norm_eps,
            "qk_bias": False, "bias": False, "tie_embeddings": self.tie_embeddings,
            "block_class_name": "SandwichBlock", "norm_class_name": "RMSNorm_llama", "mlp_class_name": "GatedMLP",
            "nonlin_name": "SiLU", "injection_type": "linear", "state_init": "like-init",
            "mean_recurrence": self.mean_recurrence,
            "init_values": {"std": self.init_std, "embedding": self.init_std, "embed_scale": self.embed_scale},
            **HUGINN_IDS,
        })
        if self.rope_scaling is not None:
            d["rope_scaling"] = dict(self.rope_scaling)
        return d


class Attention(nn.Module):
    def __init__(self, cfg: RetrofitConfig):
        super().__init__()
        E, H, KV, hd = cfg.n_embd, cfg.n_heads, cfg.num_key_value_heads, cfg.head_dim
        self.n_heads, self.n_kv, self.head_dim = H, KV, hd
        self.Wqkv = nn.Linear(E, (H + 2 * KV) * hd, bias=False)
        self.proj = nn.Linear(H * hd, E, bias=False)
        if cfg.block_type == OLMO2:
            self.q_norm = RMSNorm(H * hd, cfg.norm_eps)
            self.k_norm = RMSNorm(KV * hd, cfg.norm_eps)

    def forward(self, x: torch.Tensor, ctx: Context, last_only: bool = False) -> torch.Tensor:
        B, S, _ = x.shape
        H, KV, hd = self.n_heads, self.n_kv, self.head_dim
        q, k, v = self.Wqkv(x).split([H * hd, KV * hd, KV * hd], dim=-1)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.view(B, S, H, hd), k.view(B, S, KV, hd), v.view(B, S, KV, hd)
        k = rope_half(k, ctx.cos, ctx.sin)
        if last_only:
            q = rope_half(q[:, -1:], ctx.cos[:, -1:], ctx.sin[:, -1:])
        else:
            q = rope_half(q, ctx.cos, ctx.sin)
        return self.proj(attend(q, k, v, ctx, last_only))


class Block(nn.Module):
    """Llama pre-norm block, or OLMo-2's post-norm block (the norms act on the sublayer outputs)."""

    def __init__(self, cfg: RetrofitConfig):
        super().__init__()
        self.post_norm = cfg.block_type == OLMO2
        self.norm_1 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.norm_2 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = GatedMLP(cfg.n_embd, cfg.intermediate_size)

    def forward(self, x: torch.Tensor, ctx: Context, last_only: bool = False) -> torch.Tensor:
        if self.post_norm:
            a = self.norm_1(self.attn(x, ctx, last_only=last_only))
            x = (x[:, -1:] if last_only else x) + a
            return x + self.norm_2(self.mlp(x))
        a = self.attn(self.norm_1(x), ctx, last_only=last_only)
        x = (x[:, -1:] if last_only else x) + a
        return x + self.mlp(self.norm_2(x))


class RetrofitModel(RavenModel):
    """A retrofitted looped LM in the huginn_raven layout. Parameter names match the checkpoint keys."""

    def __init__(self, cfg: RetrofitConfig):
        super().__init__(cfg, Block)

    def encode(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> Prompt:
        cfg = self.config
        inv = inv_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
        ctx = make_context(input_ids, attention_mask, cfg.block_size, inv)
        x = self.transformer.wte(input_ids)
        if cfg.embed_scale != 1.0:
            x = x * cfg.embed_scale
        for block in self.transformer.prelude:
            x = block(x, ctx)
        return Prompt(e=x, ctx=ctx, attention_mask=attention_mask)

    def initial_state(self, prompt: Prompt, init_scale: float = 1.0, seed: SeedArg = None) -> torch.Tensor:
        """Zeros for ``init_scale = 0``; else truncated normal, std = init_values.std * init_scale, x embed_scale."""
        return truncated_normal_state(prompt.e, prompt.attention_mask, self.config.init_std * init_scale,
                                      self.config.embed_scale, seed)

    def readout(self, state: torch.Tensor, prompt: Prompt) -> torch.Tensor:
        """lm_head(ln_f(coda(s))) at the last position: ln_f once, after the coda."""
        x = state
        coda = self.transformer.coda
        for i, block in enumerate(coda):
            x = block(x, prompt.ctx, last_only=(i == len(coda) - 1))
        return last_position_logprobs(self.transformer.ln_f(x[:, -1]), self.lm_head.weight)

    def readout_all(self, state: torch.Tensor, prompt: Prompt) -> torch.Tensor:
        x = state
        for block in self.transformer.coda:
            x = block(x, prompt.ctx)
        return self.lm_head(self.transformer.ln_f(x)).float()
