"""Parcae (Prairie et al. 2026): prelude / recurrent core / coda with a diagonal (SSM-style) injection, value
embeddings, q/k-norm and a squared-ReLU MLP.  Written from ``shared/docs/parcae-format.md``.

prelude -> ln_prelude -> e;  s_t = core(a * s_{t-1} + dt * B e) with a = exp(-dt exp(A_log)), dt = softplus(dt_bias);
readout: C(s_t) -> coda -> ln_f -> tied head (optional softcap).  Pre-norm blocks; RoPE on adjacent pairs, then a
parameterless RMS norm of q and k.  Module names mirror the checkpoint's keys.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelFormatError
from .base import ConfigReader, LoopedConfig, LoopedModel, Prompt, last_position_logprobs
from .huginn import rope_table_buffer
from .layers import Context, RMSNorm, SeedArg, attend, inv_frequencies, make_context, rope_pairs, \
    truncated_normal_state

VE_GATE_CHANNELS = 32
ROPE_DEFAULTS = {"use_rope": True, "rope_condense_ratio": 1, "rope_base": 50000}


def alternate(i: int, n: int) -> bool:
    """The release's layer-index rule: i has the parity of n - 1."""
    return i % 2 == (n - 1) % 2


@dataclass
class ParcaeConfig(LoopedConfig):
    family = "parcae"
    family_title = "Parcae"

    n_embd: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    padded_vocab_size: int
    block_size: int
    n_layers_in_prelude: int
    n_layers_in_recurrent_block: int
    n_layers_in_coda: int
    mean_recurrence: int = 8
    mean_backprop_depth: int = 4
    rope_base: float = 50000.0
    norm_eps: float = 1e-5
    qk_norm: bool = True
    prelude_norm: bool = True
    tie_embeddings: bool = True
    logit_softcap: Optional[float] = None
    state_init: str = "like-init"
    vocab_size: int = 0  # the tokenizer's size (<= padded_vocab_size); 0 = padded size
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.vocab_size = self.vocab_size or self.padded_vocab_size

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.num_attention_heads

    @property
    def default_steps(self) -> int:
        return self.mean_recurrence

    @property
    def n_blocks(self) -> int:
        return self.n_layers_in_prelude + self.n_layers_in_recurrent_block + self.n_layers_in_coda

    def value_tables(self) -> list:
        """Indices j of the value-embedding tables ``value_embeds.{j}``."""
        return [j for j in range(self.n_blocks) if alternate(j, self.n_blocks)]

    def block_value_table(self, part: str, i: int) -> Optional[int]:
        """The table a block adds to its values, or None: it needs both its table and a ``ve_gate``."""
        P, R = self.n_layers_in_prelude, self.n_layers_in_recurrent_block
        table = {"prelude": i, "core_block": P + i, "coda": P + R + i}[part]
        return table if self.block_has_gate(part, i) and alternate(table, self.n_blocks) else None

    def block_has_gate(self, part: str, i: int) -> bool:
        """Whether a block has ``attn.ve_gate`` (its layer id by the release's numbering, which counts the core
        ``mean_recurrence`` times before the coda)."""
        P, R = self.n_layers_in_prelude, self.n_layers_in_recurrent_block
        layer_id = {"prelude": i, "core_block": P + i, "coda": P + R * self.mean_recurrence + i}[part]
        return alternate(layer_id, R * self.mean_backprop_depth)

    def layer_counts(self) -> Dict[str, Tuple[str, int]]:
        return {"transformer.prelude": ("n_layers_in_prelude", self.n_layers_in_prelude),
                "transformer.core_block": ("n_layers_in_recurrent_block", self.n_layers_in_recurrent_block),
                "transformer.coda": ("n_layers_in_coda", self.n_layers_in_coda)}

    IMPLEMENTED = {"injection_type": "diagonal", "block_class_name": "TransformerPreNormBlock",
                   "norm_class_name": "RMSNorm", "mlp_class_name": "BaseMLP", "nonlin_name": "ReLU2",
                   "init_strategy": "scaled-zero", "mup_model_scaling_factor": 1, "bias": False, "qk_bias": False,
                   "clip_qkv": None, "debias_attention": False, "center_attention": False, "use_abacus": False,
                   "randomize_positions_from": None}

    @classmethod
    def from_config_dict(cls, raw: dict, where: str = "config.json", tensor_names=None) -> "ParcaeConfig":
        c = ConfigReader(raw, where)
        for key, want in cls.IMPLEMENTED.items():
            c.expect(key, want, default=want)
        c.expect("state_init", ("like-init", "zero"), default="like-init")
        E, H = c.int("n_embd"), c.int("num_attention_heads")
        KV = c.int("num_key_value_heads", H)
        if E % H or (E // H) % 2:
            raise ModelFormatError(f"{where}: n_embd={E} must be num_attention_heads={H} times an even head_dim")
        if H % KV:
            raise ModelFormatError(f"{where}: num_attention_heads={H} is not a multiple of num_key_value_heads={KV}")
        I = c.int("intermediate_size")
        if c.int("recurrent_embedding_dimension", E) != E:
            raise ModelFormatError(f"{where}: recurrent_embedding_dimension={raw['recurrent_embedding_dimension']} "
                                   f"differs from n_embd={E}: not implemented")
        if c.int("recurrent_intermediation_embedding_dimension", I) != I:
            raise ModelFormatError(f"{where}: recurrent_intermediation_embedding_dimension differs from "
                                   f"intermediate_size={I}: not implemented")
        rh = raw.get("recurrent_num_attention_heads")
        if rh is not None and c.int("recurrent_num_attention_heads") != H:
            raise ModelFormatError(f"{where}: recurrent_num_attention_heads={rh} differs from "
                                   f"num_attention_heads={H}: not implemented")
        rope = c.dict("rope_settings", None) or dict(ROPE_DEFAULTS)
        rr = ConfigReader(rope, f"{where}: rope_settings")
        rr.expect("use_rope", True, default=True)
        rr.expect("rope_condense_ratio", 1, default=1)
        base = rr.float("rope_base", 50000.0)
        if base != ROPE_DEFAULTS["rope_base"]:
            # The release's loader drops rope_settings and uses its defaults: another base would be ambiguous.
            raise ModelFormatError(f"{where}: rope_settings.rope_base={base:g} is not implemented (the reference "
                                   "loader ignores rope_settings and uses 50000)")
        padded = c.int("padded_vocab_size") if raw.get("padded_vocab_size") else c.int("vocab_size")
        softcap = raw.get("logit_softcap")
        return cls(
            n_embd=E, num_attention_heads=H, num_key_value_heads=KV, intermediate_size=I,
            padded_vocab_size=padded, vocab_size=c.int("vocab_size", padded), block_size=c.int("block_size"),
            n_layers_in_prelude=c.int("n_layers_in_prelude", minimum=0),
            n_layers_in_recurrent_block=c.int("n_layers_in_recurrent_block"),
            n_layers_in_coda=c.int("n_layers_in_coda", minimum=0),
            mean_recurrence=c.int("mean_recurrence", 8), mean_backprop_depth=c.int("mean_backprop_depth", 4),
            rope_base=base, norm_eps=c.float("norm_eps", 1e-5), qk_norm=c.bool("qk_norm", True),
            prelude_norm=c.bool("prelude_norm", True), tie_embeddings=c.bool("tie_embeddings", True),
            logit_softcap=None if softcap is None else c.float("logit_softcap"),
            state_init=raw.get("state_init", "like-init"),
        )

    def to_config_dict(self) -> dict:
        d = dict(self.extra)
        d.update({
            "block_size": self.block_size, "n_embd": self.n_embd, "intermediate_size": self.intermediate_size,
            "num_attention_heads": self.num_attention_heads, "num_key_value_heads": self.num_key_value_heads,
            "vocab_size": self.vocab_size, "padding_multiple": 64, "padded_vocab_size": self.padded_vocab_size,
            "rope_settings": {"use_rope": True, "rope_condense_ratio": 1, "rope_base": self.rope_base},
            "norm_eps": self.norm_eps, "qk_norm": self.qk_norm, "logit_softcap": self.logit_softcap,
            **self.IMPLEMENTED, "use_fused_head": "pytorch",
            "n_layers_in_recurrent_block": self.n_layers_in_recurrent_block,
            "n_layers_in_prelude": self.n_layers_in_prelude, "n_layers_in_coda": self.n_layers_in_coda,
            "state_init": self.state_init, "recurrent_embedding_dimension": self.n_embd,
            "recurrent_intermediation_embedding_dimension": self.intermediate_size,
            "recurrent_num_attention_heads": None, "prelude_norm": self.prelude_norm,
            "sampling_scheme": "poisson-truncated-full", "mean_recurrence": self.mean_recurrence,
            "mean_backprop_depth": self.mean_backprop_depth, "recurrent_iteration_method": "per-sequence",
            "tie_embeddings": self.tie_embeddings, "model_class_name": "Parcae", "_class_name": "ParcaeConfig",
        })
        return d


class Attention(nn.Module):
    def __init__(self, cfg: ParcaeConfig, value_table: Optional[int], has_gate: bool):
        super().__init__()
        E, H, KV, hd = cfg.n_embd, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.n_heads, self.n_kv, self.head_dim, self.qk_norm = H, KV, hd, cfg.qk_norm
        self.value_table = value_table
        self.c_q = nn.Linear(E, H * hd, bias=False)
        self.c_k = nn.Linear(E, KV * hd, bias=False)
        self.c_v = nn.Linear(E, KV * hd, bias=False)
        self.c_proj = nn.Linear(H * hd, E, bias=False)
        if has_gate:
            self.ve_gate = nn.Linear(VE_GATE_CHANNELS, KV, bias=False)

    def forward(self, h: torch.Tensor, ctx: Context, ve: Optional[torch.Tensor], last_only: bool = False):
        B, S, _ = h.shape
        H, KV, hd = self.n_heads, self.n_kv, self.head_dim
        k = self.c_k(h).view(B, S, KV, hd)
        v = self.c_v(h).view(B, S, KV, hd)
        if ve is not None:
            gate = 2 * torch.sigmoid(self.ve_gate(h[..., :VE_GATE_CHANNELS]))  # [B, S, KV]
            v = v + gate[..., None] * ve.view(B, S, KV, hd)
        hq = h[:, -1:] if last_only else h
        cos, sin = (ctx.cos[:, -1:], ctx.sin[:, -1:]) if last_only else (ctx.cos, ctx.sin)
        q = rope_pairs(self.c_q(hq).view(B, hq.shape[1], H, hd), cos, sin)
        k = rope_pairs(k, ctx.cos, ctx.sin)
        if self.qk_norm:
            eps = torch.finfo(torch.float32).eps
            q, k = F.rms_norm(q, (hd,), eps=eps), F.rms_norm(k, (hd,), eps=eps)
        return self.c_proj(attend(q, k, v, ctx, last_only))


class MLP(nn.Module):
    def __init__(self, E: int, I: int):
        super().__init__()
        self.fc = nn.Linear(E, I, bias=False)
        self.proj = nn.Linear(I, E, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(0.5 * F.relu(self.fc(x)).square())


class Block(nn.Module):
    def __init__(self, cfg: ParcaeConfig, part: str, i: int):
        super().__init__()
        self.norm_1 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = Attention(cfg, cfg.block_value_table(part, i), cfg.block_has_gate(part, i))
        self.norm_2 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = MLP(cfg.n_embd, cfg.intermediate_size)

    def forward(self, x: torch.Tensor, ctx: Context, value_embeds: nn.ModuleDict, last_only: bool = False):
        j = self.attn.value_table
        ve = value_embeds[str(j)](ctx.input_ids) if j is not None else None
        a = self.attn(self.norm_1(x), ctx, ve, last_only=last_only)
        x = (x[:, -1:] if last_only else x) + a
        return x + self.mlp(self.norm_2(x))


class DiagonalInjection(nn.Module):
    """``s <- a * s + dt * (e @ B^T)`` with per-channel dt = softplus(dt_bias), a = exp(-dt * exp(A_log))."""

    def __init__(self, D: int, E: int):
        super().__init__()
        self.A_log = nn.Parameter(torch.zeros(D))
        self.dt_bias = nn.Parameter(torch.zeros(D))
        self.B = nn.Parameter(torch.zeros(D, E))

    def forward(self, s: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        dt = F.softplus(self.dt_bias)
        a = torch.exp(-dt * torch.exp(self.A_log))
        return a * s + dt * F.linear(e, self.B)


class ParcaeModel(LoopedModel):
    """Parcae looped LM. Parameter names match the checkpoint keys."""

    OPTIONAL_TENSORS = ("freqs_cis",)

    def __init__(self, cfg: ParcaeConfig):
        super().__init__()
        self.config = cfg
        E, V = cfg.n_embd, cfg.padded_vocab_size
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(V, E),
            prelude=nn.ModuleList(Block(cfg, "prelude", i) for i in range(cfg.n_layers_in_prelude)),
            adapter=DiagonalInjection(E, E),
            core_block=nn.ModuleList(Block(cfg, "core_block", i) for i in range(cfg.n_layers_in_recurrent_block)),
            C=nn.Linear(E, E, bias=False),
            coda=nn.ModuleList(Block(cfg, "coda", i) for i in range(cfg.n_layers_in_coda)),
            ln_f=RMSNorm(E, cfg.norm_eps),
        ))
        if cfg.prelude_norm:
            self.transformer["ln_prelude"] = RMSNorm(E, cfg.norm_eps)
        kv_width = cfg.num_key_value_heads * cfg.head_dim
        self.value_embeds = nn.ModuleDict({str(j): nn.Embedding(V, kv_width) for j in cfg.value_tables()})
        self.lm_head = nn.Linear(E, V, bias=False)
        self.tie_weights()

    def tie_weights(self) -> None:
        if self.config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight

    def release_extras(self) -> Dict[str, torch.Tensor]:
        return {"freqs_cis": rope_table_buffer(self.config.block_size, self.config.head_dim, self.config.rope_base)}

    def init_extra(self, generator: torch.Generator) -> None:
        """Decay rates and step sizes in the release's range (a in (0, 1), dt around softplus(0.3))."""
        ad = self.transformer.adapter
        E = self.config.n_embd
        ad.A_log.copy_(0.5 * torch.randn(ad.A_log.shape, generator=generator))
        ad.dt_bias.copy_(0.3 + 0.5 * torch.randn(ad.dt_bias.shape, generator=generator))
        ad.B.copy_(0.5 * torch.eye(E) + torch.randn(ad.B.shape, generator=generator) / math.sqrt(E))

    def encode(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> Prompt:
        cfg = self.config
        ctx = make_context(input_ids, attention_mask, cfg.block_size, inv_frequencies(cfg.head_dim, cfg.rope_base))
        x = self.transformer.wte(input_ids)
        for block in self.transformer.prelude:
            x = block(x, ctx, self.value_embeds)
        if cfg.prelude_norm:
            x = self.transformer.ln_prelude(x)
        return Prompt(e=x, ctx=ctx, attention_mask=attention_mask)

    def initial_state(self, prompt: Prompt, init_scale: float = 1.0, seed: SeedArg = None) -> torch.Tensor:
        """``like-init``: truncated normal with std sqrt(2 / 5E) * init_scale; zeros for scale 0 (or ``zero``)."""
        std = 0.0 if self.config.state_init == "zero" else math.sqrt(2 / (5 * self.config.n_embd)) * init_scale
        return truncated_normal_state(prompt.e, prompt.attention_mask, std, 1.0, seed)

    def step(self, state: torch.Tensor, prompt: Prompt) -> torch.Tensor:
        x = self.transformer.adapter(state, prompt.e)
        for block in self.transformer.core_block:
            x = block(x, prompt.ctx, self.value_embeds)
        return x

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        logits = F.linear(h.float(), self.lm_head.weight.float())
        cap = self.config.logit_softcap
        return cap * torch.tanh(logits / cap) if cap else logits

    def readout(self, state: torch.Tensor, prompt: Prompt) -> torch.Tensor:
        x = self.transformer.C(state)
        coda = self.transformer.coda
        for i, block in enumerate(coda):
            x = block(x, prompt.ctx, self.value_embeds, last_only=(i == len(coda) - 1))
        h = self.transformer.ln_f(x[:, -1])
        return last_position_logprobs(h, self.lm_head.weight, softcap=self.config.logit_softcap)

    def readout_all(self, state: torch.Tensor, prompt: Prompt) -> torch.Tensor:
        x = self.transformer.C(state)
        for block in self.transformer.coda:
            x = block(x, prompt.ctx, self.value_embeds)
        return self._logits(self.transformer.ln_f(x))
