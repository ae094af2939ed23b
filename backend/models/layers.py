"""Building blocks shared by the looped families: RMSNorm, rotary tables, masked attention, the random s_0.

Every family's attention goes through :func:`attend`, which handles grouped KV heads, left padding (a key mask
and per-row positions, see :func:`make_context`) and the "last query only" shortcut of the readout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PromptTooLongError

SeedArg = Union[None, int, Sequence[int]]


class RMSNorm(nn.Module):
    """float32 ``x * rsqrt(mean(x^2) + eps)``, cast back to the input dtype, times the weight (if any)."""

    def __init__(self, dim: int, eps: float, weight: bool = True):
        super().__init__()
        self.eps = eps
        if weight:
            self.weight = nn.Parameter(torch.ones(dim))
        else:
            self.register_parameter("weight", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        y = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)
        return y if self.weight is None else y * self.weight


# ------------------------------------------------------------------------------------------------ rotary
def inv_frequencies(head_dim: int, base: float, llama3: Optional[dict] = None) -> torch.Tensor:
    """``base^(-2i/hd)`` for i < hd/2, optionally rescaled by the Llama-3 rule (``rope_scaling`` of type llama3)."""
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    if llama3:
        factor = float(llama3["factor"])
        lo_f, hi_f = float(llama3["low_freq_factor"]), float(llama3["high_freq_factor"])
        orig = float(llama3["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv
        smooth = (orig / wavelen - lo_f) / (hi_f - lo_f)
        mid = (1 - smooth) * inv / factor + smooth * inv
        inv = torch.where(wavelen > orig / lo_f, inv / factor, torch.where(wavelen < orig / hi_f, inv, mid))
    return inv


def rope_tables(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [B, S, 1, hd/2] (float32) for integer positions [B, S]."""
    angles = positions.to(torch.float32)[..., None] * inv_freq.to(positions.device)
    return torch.cos(angles)[:, :, None, :], torch.sin(angles)[:, :, None, :]


def rope_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent feature pairs (2i, 2i+1) of x [B, S, H, hd] in float32 (Huginn, Parcae)."""
    xf = x.float().unflatten(-1, (-1, 2))
    a, b = xf[..., 0], xf[..., 1]
    return torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2).to(x.dtype)


def rope_half(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate feature i with feature i + hd/2 of x [B, S, H, hd] (Llama's rotate-half layout; Ouro, retrofit).

    The tables are cast to the activation dtype first, as the reference implementations do."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    a, b = x.chunk(2, dim=-1)
    return torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)


# ------------------------------------------------------------------------------------------------ context
@dataclass
class Context:
    """Per-call positional data shared by every block: token ids, RoPE tables and attention masks."""

    input_ids: torch.Tensor  # [B, S]
    cos: torch.Tensor  # [B, S, 1, hd/2] float32
    sin: torch.Tensor
    mask: Optional[torch.Tensor]  # [B, 1, S, S] bool (True = attend) or None for plain causal
    last_mask: Optional[torch.Tensor]  # [B, 1, 1, S] for the last query row, or None (attend to all)


def make_context(input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor], block_size: int,
                 inv_freq: torch.Tensor) -> Context:
    """Positions 0..n-1 of every row's real tokens (left padding), the causal key mask, and RoPE tables."""
    B, S = input_ids.shape
    dev = input_ids.device
    if S > block_size:
        raise PromptTooLongError(
            f"the prompt has {S} tokens but the model's context (block_size) is {block_size}: "
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
        # Real queries attend to real keys at or before them; a pad query attends to itself only, so that no
        # softmax row is empty (pad outputs are never read).
        mask = ((causal[None] & am[:, None, :]) | eye[None])[:, None]
        last_mask = am[:, None, None, :]
    cos, sin = rope_tables(positions, inv_freq)
    return Context(input_ids=input_ids, cos=cos, sin=sin, mask=mask, last_mask=last_mask)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: Context, last_only: bool = False) -> torch.Tensor:
    """Causal attention of q [B, Sq, H, hd] over k, v [B, S, KV, hd] -> [B, Sq, H*hd].

    Query head h uses kv head ``h // (H / KV)``.  With ``last_only`` q holds the last position only."""
    B, Sq, H, hd = q.shape
    KV = k.shape[2]
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    if KV != H:
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
    mask = ctx.last_mask if last_only else ctx.mask
    if mask is None:
        y = F.scaled_dot_product_attention(q, k, v, is_causal=not last_only)
    else:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return y.transpose(1, 2).reshape(B, Sq, H * hd)


# ------------------------------------------------------------------------------------------------ s_0
def truncated_normal_state(like: torch.Tensor, attention_mask: Optional[torch.Tensor], std: float, factor: float,
                           seed: SeedArg, width: Optional[int] = None) -> torch.Tensor:
    """A random initial state: truncated normal (+-3 std) times ``factor``; zeros when ``std`` is 0.

    Noise is drawn on the CPU in float32 from an explicit generator, one per row, for that row's real (unpadded)
    positions only: a row gets the same s_0 alone or inside a padded batch, on any device.  ``seed`` is one int
    (every row uses it), one int per row, or None (a fresh random seed)."""
    B, S = like.shape[:2]
    E = width or like.shape[-1]
    if std == 0.0:
        return torch.zeros(B, S, E, dtype=like.dtype, device=like.device)
    if seed is None:
        seeds = [int(torch.randint(0, 2**31 - 1, ()).item())] * B
    elif isinstance(seed, int):
        seeds = [seed] * B
    else:
        seeds = [int(s) for s in seed]
        if len(seeds) != B:
            raise ValueError(f"got {len(seeds)} seeds for a batch of {B}")
    lengths = [S] * B if attention_mask is None else attention_mask.sum(-1).tolist()
    out = torch.zeros(B, S, E, dtype=torch.float32)
    for i, (s, n) in enumerate(zip(seeds, lengths)):
        g = torch.Generator().manual_seed(s)
        noise = torch.empty(int(n), E, dtype=torch.float32)
        nn.init.trunc_normal_(noise, mean=0.0, std=std, a=-3 * std, b=3 * std, generator=g)
        out[i, S - int(n):] = noise
    return (out * factor).to(device=like.device, dtype=like.dtype)

