"""Where model files may come from: the shipped models, ``$LOOPLENS_MODEL_ROOTS``, and the check every file a
load opens goes through.

With ``$LOOPLENS_MODEL_ROOTS`` set (a server), every file a load opens (config, index, shards, weights,
tokenizer files, template) is resolved, symlinks and ``..`` included, and refused unless it lies under one of the
roots or in the shipped ``data/models`` (always allowed).  The check comes before any existence test, and the
messages name only what the user typed (the directory and the file names inside it), so they cannot be used to
probe the server's file system.  Shard names in an index must be plain file names inside the directory, roots
or not.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import List, Optional, Union

from ..errors import ModelFormatError
from ..settings import ENV_MODEL_ROOTS, MODELS_DIR


def shipped_models() -> List[str]:
    """Names of the models shipped in data/models (sorted; the first is the default)."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / "config.json").is_file())


def default_model_name() -> Optional[str]:
    names = shipped_models()
    return names[0] if names else None


def allowed_roots() -> Optional[List[Path]]:
    """Directories local checkpoints must live under, from $LOOPLENS_MODEL_ROOTS (os.pathsep-separated)."""
    raw = os.environ.get(ENV_MODEL_ROOTS, "").strip()
    if not raw:
        return None
    return [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]


def _allowed(p: Path, roots: List[Path]) -> bool:
    rp = p.resolve()
    return any(rp == r or r in rp.parents for r in roots + [MODELS_DIR.resolve()])


def check_allowed(p: Path, shown: Optional[str] = None) -> Path:
    """Refuse ``p`` when roots are set and it resolves outside them (and outside the shipped models)."""
    roots = allowed_roots()
    if roots is not None and not _allowed(Path(p), roots):
        raise ModelFormatError(f"{shown or p}: outside the model directories this installation allows "
                               f"(${ENV_MODEL_ROOTS}); refusing to open it")
    return Path(p)


def model_file(directory: Union[str, Path], name: str, listed_in: Optional[str] = None) -> Path:
    """``directory / name`` for a file a load is about to open, after the checks above.

    ``name`` must be a plain relative name inside the directory (no absolute path, no ``..``); ``listed_in`` names
    the file that gave it (an index), for the message."""
    if not isinstance(name, str) or not name or any(
            pp.is_absolute() or ".." in pp.parts or pp.drive for pp in (PurePosixPath(name), PureWindowsPath(name))):
        where = f"{listed_in} names {name!r}" if listed_in else repr(name)
        raise ModelFormatError(f"{where}, which is not a file name inside the model directory")
    p = Path(directory) / name
    return check_allowed(p)


def resolve_model_path(name_or_path: Union[str, Path]) -> Path:
    """A shipped model's name, or a checkpoint directory (restricted to $LOOPLENS_MODEL_ROOTS when set; the
    shipped models are always allowed, by name or by path)."""
    s = str(name_or_path).strip()
    if not s:
        raise ModelFormatError("no model given: pass a shipped model name or a checkpoint directory")
    if s in shipped_models():
        return MODELS_DIR / s
    p = Path(s).expanduser()
    roots = allowed_roots()
    if roots is not None and not _allowed(p, roots):
        raise ModelFormatError(f"{s}: model directories are restricted to ${ENV_MODEL_ROOTS} (and the shipped "
                               "models); this one is outside them")
    if p.is_dir():
        return p
    names = shipped_models()
    shipped = f"shipped models: {', '.join(names)}" if names else "no model is shipped in data/models"
    raise ModelFormatError(f"model {s!r} not found: not a directory and not a shipped model ({shipped})")
