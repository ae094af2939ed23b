"""Checkpoint files: ``config.json`` (read and written here only) and safetensors weights (one file or shards).

Only JSON and safetensors are read: no pickle, no code from the checkpoint (an ``auto_map`` entry is ignored).
The family is recognised from ``config.json`` (and, for the two that share ``model_type: huginn_raven``, from the
tensor names).  Everything is checked against the safetensors headers before a byte of weights is read: block
counts, names, shapes, dtypes.  Tensors are then read one at a time and cast to the requested dtype, so a bf16
checkpoint loads as float32 (or an fp32 one as bf16) without a second full copy.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Dict, Optional, Tuple, Type

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import ModelFormatError
from .base import LoopedConfig, LoopedModel
from .huginn import HuginnConfig, HuginnModel
from .paths import model_file
from .ouro import OuroConfig, OuroModel
from .parcae import ParcaeConfig, ParcaeModel
from .retrofit import RetrofitConfig, RetrofitModel

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_FILES = ("pytorch_model.bin", "model.pt", "model.bin")
LOADABLE_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}

# family name -> (config class, model class)
FAMILIES: Dict[str, Tuple[Type[LoopedConfig], Type[LoopedModel]]] = {
    "huginn": (HuginnConfig, HuginnModel),
    "retrofit": (RetrofitConfig, RetrofitModel),
    "ouro": (OuroConfig, OuroModel),
    "parcae": (ParcaeConfig, ParcaeModel),
}

Header = Dict[str, Tuple[Tuple[int, ...], str]]  # tensor name -> (shape, safetensors dtype)


# ------------------------------------------------------------------------------------------------ config.json
def read_config(path) -> dict:
    path = Path(path)
    cfg_path = model_file(path, CONFIG_FILE)
    if not path.is_dir():
        raise ModelFormatError(f"model directory not found: {path}")
    if not cfg_path.is_file():
        raise ModelFormatError(f"no config.json in {path}: a checkpoint directory needs one")
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"{cfg_path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ModelFormatError(f"{cfg_path}: must hold a JSON object, got {type(raw).__name__}")
    return raw


def write_config(cfg: LoopedConfig, path, extra: Optional[dict] = None) -> Path:
    """Write ``cfg`` as the release's config.json (plus ``extra`` keys) into directory ``path``."""
    d = cfg.to_config_dict()
    d.update(extra or {})
    out = Path(path) / CONFIG_FILE
    out.write_text(json.dumps(d, indent=2))
    return out


def detect_family(raw: dict, where: str = CONFIG_FILE, tensor_names=None) -> str:
    """The family of a config dict: Ouro, Parcae, or one of the two ``huginn_raven`` formats.

    Huginn-0125 and the retrofitted-recurrence models share ``model_type``/``architectures`` and even
    ``block_class_name``; Huginn's blocks have ``norm_3``/``norm_4`` (sandwich), the retrofits' do not.  With
    tensor names that decides; from the config alone, a ``rope_theta`` key or an ``init_values.embed_scale`` of 1
    marks a retrofit."""
    mt = raw.get("model_type")
    archs = raw.get("architectures")
    archs = archs if isinstance(archs, list) else []
    if mt == "ouro" or "OuroForCausalLM" in archs:
        return "ouro"
    if raw.get("_class_name") == "ParcaeConfig" or raw.get("model_class_name") == "Parcae":
        return "parcae"
    if mt == "huginn_raven" or "RavenForCausalLM" in archs:
        if tensor_names is not None:
            sandwich = any(n.endswith(".norm_3.weight") for n in tensor_names)
            return "huginn" if sandwich else "retrofit"
        init = raw.get("init_values") if isinstance(raw.get("init_values"), dict) else {}
        return "retrofit" if "rope_theta" in raw or init.get("embed_scale") == 1.0 else "huginn"
    known = "Huginn-0125 and retrofitted-recurrence (huginn_raven), Ouro (ouro), Parcae (_class_name ParcaeConfig)"
    raise ModelFormatError(
        f"{where}: unsupported model format (model_type={json.dumps(mt)}, architectures={json.dumps(archs)}); "
        f"LoopLens loads {known}")


def parse_config(raw: dict, where: str = CONFIG_FILE, tensor_names=None) -> LoopedConfig:
    """Validate a config dict and return its family's config; refuse anything not implemented (naming the key)."""
    family = detect_family(raw, where, tensor_names)
    return FAMILIES[family][0].from_config_dict(raw, where, tensor_names)


# ------------------------------------------------------------------------------------------------ weights
def weight_files(path) -> Dict[str, Path]:
    """Map every tensor name to the safetensors file holding it (single file or index + shards)."""
    path = Path(path)
    index = model_file(path, INDEX_FILE)
    single = model_file(path, SINGLE_FILE)
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise TypeError("weight_map must map tensor names to file names")
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise ModelFormatError(f"{index} is not a valid safetensors index (needs a 'weight_map'): {exc}") from None
        files = {}
        for name, fname in weight_map.items():
            f = model_file(path, fname, listed_in=INDEX_FILE)
            if not f.is_file():
                raise ModelFormatError(f"{index} names shard {fname!r} (for {name}) but it does not exist")
            files[name] = f
        return files
    if single.is_file():
        return {k: single for k in read_header({None: single})}
    pickles = [n for n in PICKLE_FILES if model_file(path, n).is_file()]
    if pickles:
        raise ModelFormatError(
            f"no safetensors weights in {path}, only {pickles[0]} (pickle formats are never loaded): convert "
            f"it once with `python -m backend convert {path}`, which writes {SINGLE_FILE} beside it")
    others = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt"))
    hint = f" (found {', '.join(others)}: pickle formats are never loaded, convert to safetensors)" if others else ""
    raise ModelFormatError(f"no weights in {path}: expected {SINGLE_FILE} or {INDEX_FILE}{hint}")


def read_header(files) -> Header:
    """Names, shapes and dtypes of the tensors in the given files (headers only; no weights are read)."""
    paths = sorted(set(files.values()))
    out: Header = {}
    for f in paths:
        try:
            with safe_open(str(f), framework="pt", device="cpu") as fh:
                for name in fh.keys():
                    sl = fh.get_slice(name)
                    out[name] = (tuple(sl.get_shape()), sl.get_dtype())
        except Exception as exc:  # safetensors raises its own error types
            raise ModelFormatError(f"{f.name} is not a readable safetensors file: {exc}") from None
    return out


def _check_block_counts(cfg: LoopedConfig, names, where: str) -> None:
    for prefix, (key, n) in cfg.layer_counts().items():
        pat = re.compile(re.escape(prefix) + r"\.(\d+)\.")
        found = {int(m.group(1)) for m in map(pat.match, names) if m}
        if found != set(range(n)):
            extra, absent = sorted(found - set(range(n))), sorted(set(range(n)) - found)
            what = (f"unexpected tensor(s) {prefix}.{extra[0]}.*" if extra
                    else f"missing tensor(s) {prefix}.{absent[0]}.*")
            raise ModelFormatError(f"{where}: {key}={n} but the weights hold {len(found)} {prefix} blocks "
                                   f"({what}): the checkpoint does not match its config")


def checkpoint_hash(path, full_limit: int = 256 * 2**20) -> str:
    """A short content id for a checkpoint: sha256 over config.json and the weight files.

    Files up to ``full_limit`` bytes are hashed whole; larger ones by their safetensors header (names, dtypes,
    shapes, offsets), size and the first and last MiB, so a 15 GB checkpoint is identified in milliseconds.
    """
    path = Path(path)
    h = hashlib.sha256(model_file(path, CONFIG_FILE).read_bytes())
    for f in sorted(set(weight_files(path).values())):
        size = f.stat().st_size
        h.update(f.name.encode() + str(size).encode())
        with open(f, "rb") as fh:
            if size <= full_limit:
                for chunk in iter(lambda: fh.read(2**20), b""):
                    h.update(chunk)
            else:
                n = int.from_bytes(fh.read(8), "little")
                fh.seek(0)
                h.update(fh.read(8 + n + 2**20))
                fh.seek(size - 2**20)
                h.update(fh.read())
    return h.hexdigest()[:16]


def build_model(cfg: LoopedConfig, device=None) -> LoopedModel:
    """An empty model of the config's family (on the meta device when ``device='meta'``)."""
    cls = FAMILIES[cfg.family][1]
    if device is None:
        return cls(cfg)
    with torch.device(device):
        return cls(cfg)


def load_checkpoint(path, device="cpu", dtype=torch.float32) -> LoopedModel:
    """Build a model from a checkpoint directory by key name; refuse missing, extra or mis-shaped tensors."""
    path = Path(path)
    where = str(path / CONFIG_FILE)
    raw = read_config(path)
    detect_family(raw, where)  # an unknown format is named before the weights are looked at
    files = weight_files(path)
    header = read_header(files)
    cfg = parse_config(raw, where, tensor_names=header.keys())
    _check_block_counts(cfg, header.keys(), where)
    model = build_model(cfg, "meta")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tied = getattr(cfg, "tie_embeddings", False)
    if tied:
        expected.pop("lm_head.weight", None)
    missing = sorted(set(expected) - set(header))
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ModelFormatError(f"{path}: missing tensor(s) {', '.join(missing[:5])}{more}")
    optional = set(model.OPTIONAL_TENSORS) | ({"lm_head.weight"} if tied else set())
    unexpected = sorted(set(header) - set(expected) - optional)
    if unexpected:
        raise ModelFormatError(
            f"{path}: unexpected tensor(s) {', '.join(unexpected[:5])}: the checkpoint does not match its config")
    for name, want in expected.items():
        shape, dt = header[name]
        if shape != want:
            raise ModelFormatError(f"{files[name].name}: tensor {name} has shape {list(shape)}, expected "
                                   f"{list(want)} from config.json")
        if dt not in LOADABLE_DTYPES:
            raise ModelFormatError(f"{files[name].name}: tensor {name} is stored as {dt}; LoopLens loads float32, "
                                   "bfloat16 or float16 weights only (quantised, boolean or float64 checkpoints "
                                   "are not converted silently)")
    state: Dict[str, torch.Tensor] = {}
    by_file: Dict[Path, list] = {}
    for name in expected:
        by_file.setdefault(files[name], []).append(name)
    for f, names in by_file.items():
        state.update(read_tensors(f, names, dtype=dtype, device=device))
    for name, t in state.items():
        if not all_finite(t):
            raise ModelFormatError(f"{path}: tensor {name} contains NaN or infinite values")
    if tied:
        state["lm_head.weight"] = state[model.EMBED_KEY]
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()
    return model.eval()


def all_finite(t: torch.Tensor, chunk: int = 2**22) -> bool:
    """``isfinite(t).all()`` in slices, so that checking a 1 GB embedding needs no 1 GB temporary."""
    flat = t.reshape(-1)
    return all(bool(torch.isfinite(part).all()) for part in flat.split(chunk))


TORCH_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


STAGING_VALUES = 2**24  # values per slice when converting dtypes while reading (32-64 MB)


def _read_exactly(fh, raw, name: str) -> None:
    view, got = memoryview(raw), 0
    while got < raw.nbytes:
        k = fh.readinto(view[got:])
        if not k:
            raise ValueError(f"tensor {name}: the file ends early")
        got += k


def read_tensors(f: Path, names, dtype=torch.float32, device="cpu") -> Dict[str, torch.Tensor]:
    """Read the named tensors of one safetensors file (already checked by :func:`read_header`), one at a time,
    straight into CPU memory and cast to ``dtype``.

    Plain reads, not a memory map: a memory-mapped file keeps every page it touched resident (and counted in
    the process's RSS) until it is closed, next to the converted copy.  Read this way, a tensor already in
    ``dtype`` is read into its final buffer, and one in another dtype is converted slice by slice through a
    small staging buffer, so the peak is the model plus a few tens of MB.  ``dtype=None`` keeps the stored one."""
    out: Dict[str, torch.Tensor] = {}
    staging = None
    try:
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
            base = 8 + n
            for name in names:
                entry = header[name]
                begin, end = entry["data_offsets"]
                src = TORCH_DTYPES[entry["dtype"]]
                out_dtype = dtype if dtype is not None else src
                buf = torch.empty(entry["shape"], dtype=out_dtype)
                flat = buf.reshape(-1)
                if flat.numel() * src.itemsize != end - begin:
                    raise ValueError(f"tensor {name}: {end - begin} bytes stored for {flat.numel()} values")
                fh.seek(base + begin)
                if src == out_dtype:  # straight into the final buffer
                    _read_exactly(fh, flat.view(torch.uint8).numpy(), name)
                else:  # through a small staging buffer, slice by slice: no full-size temporary
                    if staging is None or staging.dtype != src:
                        staging = torch.empty(STAGING_VALUES, dtype=src)
                    for i in range(0, flat.numel(), STAGING_VALUES):
                        part = staging[:min(STAGING_VALUES, flat.numel() - i)]
                        _read_exactly(fh, part.view(torch.uint8).numpy(), name)
                        flat[i:i + part.numel()].copy_(part)
                out[name] = buf.to(device=device)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelFormatError(f"could not read {f.name}: {exc}") from None
    return out


def checkpoint_state_dict(model: LoopedModel, dtype: Optional[torch.dtype] = None) -> Dict[str, torch.Tensor]:
    """The model's tensors under the release's key names (a tied head stored as a copy, plus buffers the
    release ships, such as ``freqs_cis``)."""
    out = {}
    for k, v in model.state_dict().items():
        t = v.detach().to("cpu")
        out[k] = (t.to(dtype) if dtype is not None else t).contiguous().clone()
    out.update(model.release_extras())
    return out


def save_checkpoint(
    model: LoopedModel,
    path,
    *,
    dtype: Optional[torch.dtype] = None,
    max_shard_bytes: Optional[int] = None,
    extra_config: Optional[dict] = None,
) -> Path:
    """Write config.json and safetensors (one file, or shards + index when max_shard_bytes is given)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    extra = dict(extra_config or {})
    if dtype is not None:
        extra.setdefault("torch_dtype", str(dtype).replace("torch.", ""))
    write_config(model.config, path, extra)
    sd = checkpoint_state_dict(model, dtype)
    if max_shard_bytes is None:
        save_file(sd, str(path / SINGLE_FILE), metadata={"format": "pt"})
        return path
    shards: list = [{}]
    size = 0
    for k in sorted(sd):
        nbytes = sd[k].numel() * sd[k].element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = sd[k]
        size += nbytes
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(path / fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in shard})
    total = sum(t.numel() * t.element_size() for t in sd.values())
    (path / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return path


def init_weights(model: LoopedModel, seed: int = 0, std: Optional[float] = None) -> LoopedModel:
    """Random weights with non-trivial norms and biases (for tests, benchmarks and training from scratch).

    Norm weights 1 + N(0, 0.1^2), q/k biases N(0, 0.1^2), everything else N(0, std^2) with std sqrt(2 / 5E)
    unless given; the family may adjust its own parameters (``model.init_extra``)."""
    g = torch.Generator().manual_seed(seed)
    E = model.config.n_embd
    std = std if std is not None else math.sqrt(2 / (5 * E))
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 2)[-2] if name.count(".") else name
            if "norm" in leaf or leaf.startswith("ln_"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("qk_bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))
        model.init_extra(g)
    return model
