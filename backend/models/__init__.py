"""Looped language models: one interface (``base.LoopedModel``), one module per family, checkpoints, templates.

``base.py``        the interface (encode / initial_state / step / readout) and the run loop on top of it
``layers.py``      RMSNorm, rotary tables, masked attention, the random initial state
``huginn.py``      Huginn-0125          } one config dataclass + one module each, parameter names
``retrofit.py``    retrofitted Llama/OLMo } mirroring the release's checkpoint keys (read like nanoGPT's
``ouro.py``        Ouro (exit gate)     } model.py)
``parcae.py``      Parcae               }
``checkpoint.py``  config.json (read and written there only), family recognition, safetensors loading/saving
``convert.py``     ``python -m backend convert DIR``: a pickled pytorch_model.bin -> model.safetensors, on request
``paths.py``       shipped models, $LOOPLENS_MODEL_ROOTS and the check every opened file goes through
``prompting.py``   prompt templates (shipped as JSON in ``templates/``) and option-token resolution
``runtime.py``     set-up of a long-running server (threads, default model)

``load_model(path, device="cpu", dtype=torch.float32)`` returns the family's :class:`LoopedModel`;
``load_bundle(name_or_path)`` returns the model with its tokenizer and prompt template, ready for tracing.
``path`` may also be the name of a model shipped in ``data/models/``.
"""
from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union

import torch

from ..errors import LoopLensError, ModelFormatError, UsageError
from .checkpoint import (CONFIG_FILE, build_model, checkpoint_hash, load_checkpoint, parse_config, read_config,
                         read_header, save_checkpoint, weight_files)
from .base import LoopedConfig, LoopedModel, StepOutput
from .huginn import HuginnConfig, HuginnModel
from .paths import allowed_roots, default_model_name, model_file, resolve_model_path, shipped_models
from .prompting import (BUILTIN_TEMPLATES, HUGINN_CHAT, LETTERS, PLAIN, OptionTokens, PromptTemplate,
                        resolve_option_tokens, template_for)

from ..settings import MODELS_DIR

__all__ = [
    "LoopedConfig", "LoopedModel", "StepOutput", "HuginnConfig", "HuginnModel", "LoadedModel", "OptionTokens", "PromptTemplate", "HUGINN_CHAT", "PLAIN",
    "BUILTIN_TEMPLATES", "LETTERS", "load_model", "load_bundle", "load_tokenizer", "resolve_model_path",
    "shipped_models", "default_model_name", "save_checkpoint", "parse_config", "resolve_option_tokens",
    "template_for", "parse_dtype", "describe", "describe_checkpoint", "special_tokens_from_files",
]


def parse_dtype(dtype: Union[str, torch.dtype]) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise LoopLensError(f"unknown dtype {dtype!r}: use one of float32, bfloat16, float16")
    return table[dtype]


@functools.lru_cache(maxsize=None)
def _cpu_dtype_works(dtype_name: str) -> bool:
    """Probe a half-precision matmul in a subprocess: on some CPUs (AMX) bfloat16 kills the process (SIGILL)."""
    code = (f"import torch; a = torch.randn(64, 64, dtype=torch.{dtype_name}); "
            "b = torch.nn.functional.linear(a, a); print(float(b.float().sum()))")
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, env=os.environ.copy())
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def parse_device(device: Union[str, torch.device]) -> torch.device:
    """The device to run on; anything that cannot hold and run a model here is one line about the *device*."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"device {str(device)!r} is not a device torch knows: use 'cpu' or 'cuda' (or 'cuda:N')") \
            from None
    if dev.type == "meta":
        raise UsageError("device 'meta' holds shapes but no data, so a model cannot run there: use 'cpu' or 'cuda'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise LoopLensError("CUDA was requested but no GPU is available: use device 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise LoopLensError("device 'mps' (Apple GPU) is not available on this machine: use 'cpu'")
    elif dev.type != "cpu":
        raise UsageError(f"device {str(device)!r} is not supported: use 'cpu' or 'cuda' (or 'mps' on a Mac)")
    return dev


def check_device_dtype(device: Union[str, torch.device], dtype: torch.dtype) -> None:
    dev = parse_device(device)
    if dev.type == "cpu" and dtype in (torch.bfloat16, torch.float16):
        name = str(dtype).replace("torch.", "")
        if not _cpu_dtype_works(name):
            raise LoopLensError(
                f"{name} matrix multiplication crashes on this CPU (oneDNN picks kernels the machine does not "
                "allow). Use float32 on the CPU, or start with ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 set."
            )


def load_model(path, device="cpu", dtype=torch.float32) -> LoopedModel:
    """Load a checkpoint directory of any implemented family (or a shipped model's name) into our own module."""
    dtype = parse_dtype(dtype)
    check_device_dtype(device, dtype)
    return load_checkpoint(resolve_model_path(path), device=device, dtype=dtype)


SPECIAL_ROLES = ("bos", "eos", "pad", "unk")


def _read_json(f: Path):
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def special_tokens_from_files(path) -> Dict[str, str]:
    """bos/eos/pad/unk token *texts* named by the tokenizer files (``tokenizer_config.json``, then
    ``special_tokens_map.json``, then a leading special token in ``tokenizer.json``'s post-processor for bos).
    Never from config.json's ids: retrofit configs carry Huginn's ids, which are ordinary Llama words."""
    path = Path(path)
    found: Dict[str, str] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        d = _read_json(model_file(path, name))
        if not isinstance(d, dict):
            continue
        for role in SPECIAL_ROLES:
            v = d.get(f"{role}_token")
            v = v.get("content") if isinstance(v, dict) else v
            if isinstance(v, str) and v and role not in found:
                found[role] = v
    if "bos" not in found:
        tj = _read_json(model_file(path, "tokenizer.json"))
        pp = tj.get("post_processor") if isinstance(tj, dict) else None
        procs = (pp.get("processors") or [pp]) if isinstance(pp, dict) else []
        for proc in procs:
            single = proc.get("single") if isinstance(proc, dict) and proc.get("type") == "TemplateProcessing" else None
            first = single[0] if isinstance(single, list) and single else None
            if isinstance(first, dict) and isinstance(first.get("SpecialToken"), dict):
                found["bos"] = first["SpecialToken"].get("id")
                break
    return {k: v for k, v in found.items() if isinstance(v, str)}


def load_tokenizer(path):
    """The checkpoint's ``tokenizer.json`` through transformers' fast tokenizer (no remote code), with its
    special tokens taken from the tokenizer files (see :func:`special_tokens_from_files`)."""
    path = Path(path)
    tok_file = model_file(path, "tokenizer.json")
    if not tok_file.is_file():
        raise ModelFormatError(
            f"no tokenizer.json in {path}: tracing a question needs the model's tokenizer next to its weights"
        )
    from transformers import PreTrainedTokenizerFast

    try:
        tok = PreTrainedTokenizerFast(tokenizer_file=str(tok_file))
    except Exception as exc:
        raise ModelFormatError(f"{tok_file} could not be loaded as a tokenizer: {exc}") from None
    vocab = tok.get_vocab()
    for role, text in special_tokens_from_files(path).items():
        if text in vocab:
            setattr(tok, f"{role}_token", text)
    return tok


@dataclass
class LoadedModel:
    """A model with everything tracing needs."""

    model: LoopedModel
    tokenizer: object
    template: PromptTemplate
    name: str
    path: Path
    checkpoint_hash: str

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def family(self) -> str:
        return self.model.config.family

    @property
    def default_steps(self) -> int:
        """The family's trained/default depth (mean_recurrence, total_ut_steps)."""
        return self.model.config.default_steps


def load_bundle(name_or_path, device="cpu", dtype=torch.float32) -> LoadedModel:
    path = resolve_model_path(name_or_path)
    model = load_model(path, device=device, dtype=dtype)
    tokenizer = load_tokenizer(path)
    template = template_for(path, tokenizer, model.config.family)
    name = path.name if path.parent.resolve() == MODELS_DIR.resolve() else str(path)
    return LoadedModel(model=model, tokenizer=tokenizer, template=template, name=name, path=path,
                       checkpoint_hash=checkpoint_hash(path))


DEPTH_KEYS = {"huginn": "mean_recurrence", "retrofit": "mean_recurrence", "parcae": "mean_recurrence",
              "ouro": "total_ut_steps"}


def _description(cfg: LoopedConfig, n: int, dtype: str) -> dict:
    size = f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.0f} k"
    depth = cfg.default_steps
    summary = f"{cfg.family_title} · {size} parameters · trained depth {depth} steps"
    return {
        "family": cfg.family, "family_title": cfg.family_title, "parameters": int(n), "parameters_text": size,
        "trained_depth": int(depth), "depth_key": DEPTH_KEYS.get(cfg.family, ""), "exit_gate": cfg.family == "ouro",
        "random_initial_state": cfg.family != "ouro", "dtype": dtype, "context": int(cfg.block_size),
        "summary": summary,
    }


def describe(bundle: LoadedModel) -> dict:
    """What the sidebar shows about a loaded model: family, size, trained depth and a one-line summary."""
    return _description(bundle.model.config, bundle.model.num_parameters(), str(bundle.dtype).replace("torch.", ""))


def describe_checkpoint(name_or_path) -> dict:
    """:func:`describe` of a checkpoint without loading its weights: the family and trained depth from
    ``config.json``, the parameter count from the safetensors headers' shapes (milliseconds for any size).

    Counts what :func:`load_model` would hold: the tensors the family's module has as parameters (a tied head
    counts once, stored extras such as a RoPE table do not); ``dtype`` is the one the app loads in (float32)."""
    path = resolve_model_path(name_or_path)
    raw = read_config(path)
    header = read_header(weight_files(path))
    cfg = parse_config(raw, str(path / CONFIG_FILE), tensor_names=header.keys())
    meta = build_model(cfg, "meta")  # shapes only: no memory, nothing read
    meta.tie_weights()
    params = {name for name, _ in meta.named_parameters()}  # shared (tied) tensors are named once
    n = sum(math.prod(shape) for name, (shape, _) in header.items() if name in params)
    return _description(cfg, n, "float32")
