"""Ouro (ByteDance LoopLM, 2025): the whole decoder stack applied ``total_ut_steps`` times, with an exit gate.
Written from ``shared/docs/ouro-format.md``.

embed -> (L decoder layers, then ``model.norm``) x T; the normed output h_t is both the next step's input and
the state read out after step t (``lm_head(h_t)``, untied).  No prelude, coda, adapter or random initial state:
s_0 is the embedding.  Each layer has four RMSNorms, two on the sublayer outputs before the residual add.
The exit gate ``sigmoid(early_exit_gate(h_t))`` is the model's own probability of stopping after step t.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelFormatError
from .base import ConfigReader, LoopedConfig, LoopedModel, Prompt, last_position_logprobs
from .layers import Context, RMSNorm, SeedArg, attend, inv_frequencies, make_context, rope_half


@dataclass
class OuroConfig(LoopedConfig):
    family = "ouro"
    family_title = "Ouro (LoopLM)"

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int = 65536
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1000000.0
    tie_word_embeddings: bool = False
    total_ut_steps: int = 4
    early_exit_threshold: float = 1.0
    extra: dict = field(default_factory=dict)

    @property
    def n_embd(self) -> int:
        return self.hidden_size

    @property
    def block_size(self) -> int:
        return self.max_position_embeddings

    @property
    def tie_embeddings(self) -> bool:
        return self.tie_word_embeddings

    @property
    def default_steps(self) -> int:
        return self.total_ut_steps

    def layer_counts(self) -> Dict[str, Tuple[str, int]]:
        return {"model.layers": ("num_hidden_layers", self.num_hidden_layers)}

    @classmethod
    def from_config_dict(cls, raw: dict, where: str = "config.json", tensor_names=None) -> "OuroConfig":
        c = ConfigReader(raw, where)
        c.expect("hidden_act", "silu", default="silu")
        c.expect("use_sliding_window", False, default=False)
        c.expect("rope_scaling", None, default=None)
        L = c.int("num_hidden_layers")
        types = raw.get("layer_types")
        if types is not None and (not isinstance(types, list) or any(t != "full_attention" for t in types)):
            raise ModelFormatError(f"{where}: layer_types must all be \"full_attention\" (sliding-window layers "
                                   "are not implemented)")
        if types is not None and len(types) != L:
            raise ModelFormatError(f"{where}: layer_types has {len(types)} entries for num_hidden_layers={L}")
        E, H = c.int("hidden_size"), c.int("num_attention_heads")
        KV = c.int("num_key_value_heads", H)
        hd = c.int("head_dim", E // H if E % H == 0 else 0)
        if hd % 2:
            raise ModelFormatError(f"{where}: head_dim={hd} must be even for rotary embeddings")
        if H % KV:
            raise ModelFormatError(f"{where}: num_attention_heads={H} is not a multiple of num_key_value_heads={KV}")
        return cls(
            hidden_size=E, num_hidden_layers=L, num_attention_heads=H, num_key_value_heads=KV, head_dim=hd,
            intermediate_size=c.int("intermediate_size"), vocab_size=c.int("vocab_size"),
            max_position_embeddings=c.int("max_position_embeddings", 65536),
            rms_norm_eps=c.float("rms_norm_eps", 1e-6), rope_theta=c.float("rope_theta", 1000000.0),
            tie_word_embeddings=c.bool("tie_word_embeddings", False),
            total_ut_steps=c.int("total_ut_steps", 4),
            early_exit_threshold=c.float("early_exit_threshold", 1.0, positive=False),
        )

    def to_config_dict(self) -> dict:
        d = dict(self.extra)
        d.update({
            "architectures": ["OuroForCausalLM"], "model_type": "ouro",
            "hidden_size": self.hidden_size, "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads, "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim, "intermediate_size": self.intermediate_size, "vocab_size": self.vocab_size,
            "hidden_act": "silu", "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps, "rope_theta": self.rope_theta, "rope_scaling": None,
            "tie_word_embeddings": self.tie_word_embeddings, "use_sliding_window": False, "sliding_window": None,
            "layer_types": ["full_attention"] * self.num_hidden_layers,
            "total_ut_steps": self.total_ut_steps, "early_exit_threshold": self.early_exit_threshold,
            "bos_token_id": 0, "eos_token_id": 0,
        })
        return d


class Attention(nn.Module):
    def __init__(self, cfg: OuroConfig):
        super().__init__()
        E, H, KV, hd = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.n_heads, self.n_kv, self.head_dim = H, KV, hd
        self.q_proj = nn.Linear(E, H * hd, bias=False)
        self.k_proj = nn.Linear(E, KV * hd, bias=False)
        self.v_proj = nn.Linear(E, KV * hd, bias=False)
        self.o_proj = nn.Linear(H * hd, E, bias=False)

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        B, S, _ = x.shape
        q = rope_half(self.q_proj(x).view(B, S, self.n_heads, self.head_dim), ctx.cos, ctx.sin)
        k = rope_half(self.k_proj(x).view(B, S, self.n_kv, self.head_dim), ctx.cos, ctx.sin)
        v = self.v_proj(x).view(B, S, self.n_kv, self.head_dim)
        return self.o_proj(attend(q, k, v, ctx))


class MLP(nn.Module):
    def __init__(self, E: int, I: int):
        super().__init__()
        self.gate_proj = nn.Linear(E, I, bias=False)
        self.up_proj = nn.Linear(E, I, bias=False)
        self.down_proj = nn.Linear(I, E, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """``x + norm(attn(norm x))``, ``x + norm(mlp(norm x))``: the second norm of each pair acts on the output."""

    def __init__(self, cfg: OuroConfig):
        super().__init__()
        E, eps = cfg.hidden_size, cfg.rms_norm_eps
        self.input_layernorm = RMSNorm(E, eps)
        self.self_attn = Attention(cfg)
        self.input_layernorm_2 = RMSNorm(E, eps)
        self.post_attention_layernorm = RMSNorm(E, eps)
        self.mlp = MLP(E, cfg.intermediate_size)
        self.post_attention_layernorm_2 = RMSNorm(E, eps)

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        x = x + self.input_layernorm_2(self.self_attn(self.input_layernorm(x), ctx))
        return x + self.post_attention_layernorm_2(self.mlp(self.post_attention_layernorm(x)))


class OuroModel(LoopedModel):
    """Ouro looped LM. Parameter names match the checkpoint keys."""

    EMBED_KEY = "model.embed_tokens.weight"

    def __init__(self, cfg: OuroConfig):
        super().__init__()
        self.config = cfg
        E = cfg.hidden_size
        self.model = nn.ModuleDict(dict(
            embed_tokens=nn.Embedding(cfg.vocab_size, E),
            layers=nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers)),
            norm=RMSNorm(E, cfg.rms_norm_eps),
            early_exit_gate=nn.Linear(E, 1, bias=True),
        ))
        self.lm_head = nn.Linear(E, cfg.vocab_size, bias=False)
        self.tie_weights()

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def encode(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> Prompt:
        """The embedding (no scale) and the positional context; there is no prelude."""
        cfg = self.config
        ctx = make_context(input_ids, attention_mask, cfg.max_position_embeddings,
                           inv_frequencies(cfg.head_dim, cfg.rope_theta))
        return Prompt(e=self.model.embed_tokens(input_ids), ctx=ctx, attention_mask=attention_mask)

    def initial_state(self, prompt: Prompt, init_scale: float = 1.0, seed: SeedArg = None) -> torch.Tensor:
        """s_0 is the embedding itself (Ouro has no random state: ``init_scale`` and ``seed`` change nothing)."""
        return prompt.e

    def step(self, state: torch.Tensor, prompt: Prompt) -> torch.Tensor:
        """One loop: every layer, then ``model.norm``; the embedding enters only through s_0."""
        x = state
        for layer in self.model.layers:
            x = layer(x, prompt.ctx)
        return self.model.norm(x)

    def readout(self, state: torch.Tensor, prompt: Prompt) -> torch.Tensor:
        return last_position_logprobs(state[:, -1], self.lm_head.weight)

    def readout_all(self, state: torch.Tensor, prompt: Prompt) -> torch.Tensor:
        return self.lm_head(state).float()

    def gate_logits(self, state: torch.Tensor) -> torch.Tensor:
        """[B, S] float32 exit-gate logits g_t at every position."""
        return self.model.early_exit_gate(state).squeeze(-1).float()

    def exit_gate(self, state: torch.Tensor, prompt: Prompt) -> torch.Tensor:
        """lambda_t = sigmoid(g_t) at the last position: [B] float32."""
        return torch.sigmoid(self.gate_logits(state[:, -1:])[:, 0])
