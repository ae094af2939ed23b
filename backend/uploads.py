"""Where the app's questions come from, next to :mod:`backend.items`: the shipped benchmark files, an uploaded
JSONL file (size- and encoding-checked), a question typed with its options, the item filter, and seed lists.

Everything returns :class:`~backend.items.Item` / :class:`~backend.items.Benchmark` objects or raises a
:class:`~backend.errors.UsageError` naming the problem.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

from .errors import UsageError
from .items import Benchmark, BenchmarkItem, Item, LineError, parse_benchmark_lines
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


def benchmark_files(model: Optional[str] = None) -> List[Path]:
    """Benchmark JSONL files shipped in data/benchmarks; the model's own test set first, then general-qa."""
    if not BENCHMARKS_DIR.is_dir():
        return []
    name = Path(model).name if model else None

    def rank(p: Path):
        if name and p.name == f"{name}-test.jsonl":
            return (0, p.name)
        if p.name == "general-qa.jsonl":
            return (1, p.name)
        return (2, p.name)

    return sorted(BENCHMARKS_DIR.glob("*.jsonl"), key=rank)


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
