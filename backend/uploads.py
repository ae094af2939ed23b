"""Where the app's questions come from, next to :mod:`backend.items`: the shipped benchmark files, an uploaded
JSONL file (size- and encoding-checked), a question typed with its options, the item filter, and seed lists.

Everything returns :class:`~backend.items.Item` / :class:`~backend.items.Benchmark` objects or raises a
:class:`~backend.errors.UsageError` naming the problem.
"""
from __future__ import annotations

import functools
import json
import random
import re
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

from . import cups, fit
from .errors import LoopLensError, UsageError
from .items import Benchmark, BenchmarkItem, Item, LineError, load_benchmark, parse_benchmark_lines
from .models import LoadedModel, load_tokenizer, resolve_model_path
from .settings import BENCHMARKS_DIR, DEFAULT_SEED, LETTERS, MAX_OPTIONS, MIN_OPTIONS

MAX_UPLOAD_BYTES = 2 * 1024 * 1024  # uploaded benchmark files (the server's own limit is in .streamlit/config.toml)
MAX_UPLOAD_LINES = 5000
MAX_SEEDS = 64

# Shown when no benchmark file exists yet, so the app always opens with a question loaded.
EXAMPLE_ITEM = BenchmarkItem(
    id="example-001", domain="factual", question="What is the capital of Australia?", answer="Canberra",
    distractors=["Sydney", "Melbourne", "Perth"], easy_distractors=["Banana", "Violin", "Thursday"],
    nca_distractor="Brisbane",
)
_LABEL = re.compile(r"^[A-Ja-j][\)\.:]\s+")


# One line that explains a task's notation wherever its questions appear (app pages, Learn), by benchmark or
# model name prefix.  The cups task is the default model's: its questions are not English.
CUPS_NOTATION = ("Notation: \"ball c2 : s34 s23 ?\" means the ball starts under cup c2, then s34 swaps cups 3 and 4, "
                 "s23 swaps cups 2 and 3, ...; the question is which cup (c1-c5) holds the ball at the end.")


def notation(name: Optional[str]) -> Optional[str]:
    """The one-line notation note for a benchmark file or model named ``name`` (a path or a name), or None when
    its questions are plain language."""
    if not name:
        return None
    stem = Path(str(name)).name
    return CUPS_NOTATION if stem.startswith("cups-") else None


ModelRef = Union[None, str, Path, LoadedModel]
FIT_SAMPLE = 200  # items of a benchmark file checked for words a model does not know (spread over the file)
UNFIT_LABEL = "words this model does not know"
OWN_SPLIT_ORDER = ("test", "probe", "hard")  # a model's own files: held-out test, the cue-breaking probe, longer


def _model_name(model: ModelRef) -> Optional[str]:
    if model is None:
        return None
    return Path(str(model.name if isinstance(model, LoadedModel) else model)).name or None


@functools.lru_cache(maxsize=8)
def _tokenizer_at(path: str, mtime: float):
    return load_tokenizer(path)


def _tokenizer(model: ModelRef):
    """The model's tokenizer (a bundle's own, or read from its directory), or None when it cannot be read."""
    if isinstance(model, LoadedModel):
        return model.tokenizer
    if not model:
        return None
    try:
        path = resolve_model_path(model)
        tok_file = path / "tokenizer.json"
        return _tokenizer_at(str(path), tok_file.stat().st_mtime)
    except (LoopLensError, OSError):
        return None


def _item_texts(it: BenchmarkItem) -> List[str]:
    return [it.question, it.answer, *it.distractors, *it.easy_distractors, *([it.nca_distractor] if it.nca_distractor else [])]


@functools.lru_cache(maxsize=64)
def _unknown_in_file(tok, path: str, mtime: float) -> Tuple[str, ...]:
    bench = load_benchmark(path)
    items = bench.items
    if len(items) > FIT_SAMPLE:  # evenly spread over the file
        items = [items[round(k * (len(items) - 1) / (FIT_SAMPLE - 1))] for k in range(FIT_SAMPLE)]
    out: List[str] = []
    for it in items:
        for text in _item_texts(it):
            for w in fit.unknown_words(tok, text or ""):
                if w not in out:
                    out.append(w)
    return tuple(out)


def benchmark_unknown_words(model: ModelRef, path: Union[str, Path]) -> Tuple[str, ...]:
    """Words in (a sample of up to 200 items of) a benchmark file that the model does not know, in order of first
    appearance; () when it knows them all or its tokenizer cannot be read.  Cached per (model, file)."""
    tok = _tokenizer(model)
    if tok is None or fit.unk_token_id(tok) is None:
        return ()
    path = Path(path)
    try:
        mtime = path.stat().st_mtime
        return _unknown_in_file(tok, str(path), mtime)
    except (LoopLensError, OSError):
        return ()


def benchmark_files(model: ModelRef = None) -> List[Path]:
    """Benchmark JSONL files shipped in data/benchmarks, those that fit the model first: the model's own files
    (``<model>-test``, then its other splits), general-qa, the rest; files with words the model does not know
    (:func:`benchmark_unknown_words`) come last.  ``model``: a shipped name, a directory or a loaded bundle."""
    if not BENCHMARKS_DIR.is_dir():
        return []
    name = _model_name(model)

    def rank(p: Path):
        if name and p.name == f"{name}-test.jsonl":
            return (0, 0, p.name)
        if name and p.name.startswith(f"{name}-"):
            split = p.stem[len(name) + 1:]
            return (1, OWN_SPLIT_ORDER.index(split) if split in OWN_SPLIT_ORDER else len(OWN_SPLIT_ORDER), p.name)
        if p.name == "general-qa.jsonl":
            return (2, 0, p.name)
        return (3, 0, p.name)

    files = sorted(BENCHMARKS_DIR.glob("*.jsonl"), key=rank)
    return sorted(files, key=lambda p: bool(benchmark_unknown_words(model, p)))  # stable: fitting ones first


def benchmark_label(model: ModelRef, path: Union[str, Path]) -> str:
    """A benchmark file's name for a picker, with "(words this model does not know)" when it does not fit."""
    name = Path(path).name
    return f"{name} ({UNFIT_LABEL})" if benchmark_unknown_words(model, path) else name


def example_item(model: ModelRef = None) -> BenchmarkItem:
    """A question the model understands, for pre-filled boxes and the built-in fallback: an item of the model's
    own test split when one is shipped (the first with 3 or more swaps for the cups splits), a cups question for a model with the cups vocabulary, else
    :data:`EXAMPLE_ITEM` (English)."""
    name = _model_name(model)
    candidates: List[BenchmarkItem] = []
    own = BENCHMARKS_DIR / f"{name}-test.jsonl" if name else None
    if own is not None and own.is_file():
        try:
            items = load_benchmark(own).items
            # one with a few swaps shows more than the shortest (the splits carry "swaps")
            candidates += sorted(items, key=lambda it: (it.extra or {}).get("swaps", 3) < 3)[:1]
        except (LoopLensError, OSError):
            pass
    tok = _tokenizer(model)
    if name and name.startswith("cups-") or (tok is not None and fit.is_word_level(tok)
                                                 and set(fit.vocabulary_words(tok)) <= set(cups.WORDS)):
        start, swaps = 1, ["s34", "s23", "s13"]
        d = cups.make_item(start, swaps, cups.simulate(start, swaps), "example-cups", random.Random(0))
        candidates.append(BenchmarkItem(**{k: d[k] for k in ("id", "domain", "question", "answer", "distractors",
                                                              "easy_distractors", "nca_distractor")}))
    candidates.append(EXAMPLE_ITEM)
    for it in candidates:
        if tok is None or not any(fit.unknown_words(tok, t) for t in _item_texts(it)):
            return it
    return candidates[0]


def parse_upload(data: bytes, name: str = "upload") -> Benchmark:
    """An uploaded benchmark JSONL: size- and encoding-checked; bad lines are listed, good ones usable."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise UsageError(f"{name} is {len(data) / 1e6:.1f} MB; uploads are limited to {MAX_UPLOAD_BYTES / 1e6:.0f} MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{name} is not UTF-8 text: upload a JSONL file (one JSON object per line)") from None
    lines = text.splitlines()
    if len(lines) > MAX_UPLOAD_LINES:
        raise UsageError(f"{name} has {len(lines)} lines; uploads are limited to {MAX_UPLOAD_LINES}")
    unencodable = []
    for n, line in enumerate(lines, start=1):
        if "\\u" in line and _has_lone_surrogate(line):
            unencodable.append(LineError(n, "holds a lone surrogate escape (like \\ud800), which is not a character: "
                                            "fix the text or remove the escape"))
            lines[n - 1] = ""  # skipped below, line numbers kept
    bench = parse_benchmark_lines(lines, source=name)
    if not bench.items and not bench.errors and not unencodable:
        raise UsageError(f"{name} is empty: a benchmark has one JSON object per line")
    if unencodable:
        bench = Benchmark(bench.items, sorted(bench.errors + unencodable, key=lambda e: e.line), bench.source)
    return bench


def _has_lone_surrogate(line: str) -> bool:
    """Whether a JSON line decodes to text with an unpaired surrogate (it cannot be shown, encoded or tokenised)."""
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return False  # reported by the parser
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except (RecursionError, ValueError):
        return False
    return False


def filter_items(items: Sequence[BenchmarkItem], domains: Iterable[str] = (), variant: Optional[str] = None,
                 search: str = "") -> List[BenchmarkItem]:
    """Items in any of ``domains`` (all if empty) that have ``variant`` and whose id/question/options match."""
    doms = set(domains or ())
    s = (search or "").strip().casefold()
    out = []
    for it in items:
        if doms and (it.domain or "") not in doms:
            continue
        if variant and variant not in it.available_variants():
            continue
        if s:
            hay = " ".join([it.id, it.question, it.answer, *it.distractors, *it.easy_distractors,
                            it.nca_distractor or ""]).casefold()
            if s not in hay:
                continue
        out.append(it)
    return out


def parse_options_text(text: str) -> List[str]:
    """Options typed one per line (blank lines ignored; a leading 'A)' / 'A.' label is stripped)."""
    opts = [_LABEL.sub("", line.strip()) for line in (text or "").splitlines() if line.strip()]
    if not MIN_OPTIONS <= len(opts) <= MAX_OPTIONS:
        raise UsageError(f"type {MIN_OPTIONS} to {MAX_OPTIONS} options, one per line (got {len(opts)})")
    return opts


def custom_item(question: str, options_text: str, correct_letter: Optional[str]) -> Item:
    """A typed question with its options (one per line) and the correct letter (None/''/'none': no correct one)."""
    opts = parse_options_text(options_text)
    correct = None
    if correct_letter not in (None, "", "none"):
        if correct_letter not in LETTERS[:len(opts)]:
            raise UsageError(f"the correct option {correct_letter!r} is not one of {', '.join(LETTERS[:len(opts)])}")
        correct = LETTERS.index(correct_letter)
    return Item(question, tuple(opts), correct, id="custom")


def parse_seeds(text, default: int = DEFAULT_SEED) -> List[int]:
    """'0' or '0, 1, 2' or '0-4' -> list of seeds (at most 64)."""
    s = str(text if text is not None else "").strip()
    if not s:
        return [default]
    out: List[int] = []
    for part in s.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1) if not part.startswith("-") else (part, part)
                lo, hi = int(a), int(b)
                if hi < lo or hi - lo > MAX_SEEDS - 1:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise UsageError(f"seeds must be whole numbers like '0' or '0, 1, 2' or '0-4', got {part!r}") from None
    if any(x < 0 or x >= 2**31 for x in out):
        raise UsageError("seeds must be between 0 and 2147483647")
    if len(out) > MAX_SEEDS:
        raise UsageError(f"at most {MAX_SEEDS} seeds at once")
    return out
