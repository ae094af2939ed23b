"""Questions, benchmark items, variants and answer-order permutations.

An :class:`Item` is one question with 2-10 options as shown to the model (optional correct index).
A :class:`BenchmarkItem` is one line of a benchmark JSONL file::

    {"id": "fact-001", "domain": "factual", "question": "...", "answer": "...",
     "distractors": [3 plausible], "easy_distractors": [3 unrelated], "nca_distractor": "a 4th plausible one"}

giving the variants ``base`` (answer + distractors), ``easy`` (answer + easy_distractors) and ``nca``
(nca_distractor + distractors: no correct option).  Extra fields are kept.
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple, Union

import numpy as np

from .errors import UsageError

from .settings import MAX_DEFAULT_ORDERS, MAX_OPTIONS, MIN_OPTIONS  # noqa: E402,F401  (re-exported)
VARIANTS = ("base", "easy", "nca")
# Bounds checked before anything is built or tokenised: no model context holds a question this long, and a
# benchmark line is one item (a few hundred characters); deeper JSON than this is not an item.
MAX_TEXT_CHARS = 100_000
MAX_LINE_CHARS = 1_000_000
MAX_JSON_DEPTH = 32
DOMAINS = ("factual", "definition", "logic", "arithmetic", "misleading")
REQUIRED_FIELDS = ("id", "question", "answer", "distractors")


def check_text(text: str, what: str) -> None:
    """Refuse text that is too long or not valid Unicode (an unpaired surrogate such as ``"\\ud800"``)."""
    if len(text) > MAX_TEXT_CHARS:
        raise UsageError(f"{what} is {len(text):,} characters long (at most {MAX_TEXT_CHARS:,})")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        raise UsageError(f"{what} contains an unpaired surrogate ({ascii(bad)}), which is not valid text: "
                         "fix the file's encoding") from None


def _clean(text, what: str) -> str:
    if not isinstance(text, str):
        raise UsageError(f"{what} must be text, got {type(text).__name__}")
    check_text(text, what)
    t = text.strip()
    if not t:
        raise UsageError(f"{what} is empty")
    return t


@dataclass(frozen=True)
class Item:
    """A question with its options in the order shown to the model."""

    question: str
    options: Tuple[str, ...]
    correct: Optional[int] = None
    id: Optional[str] = None
    domain: Optional[str] = None
    variant: Optional[str] = None
    permutation: int = 0
    order: Tuple[int, ...] = ()  # order[i] = index in the original (unpermuted) options of shown option i

    def __post_init__(self):
        object.__setattr__(self, "question", _clean(self.question, "the question"))
        opts = tuple(_clean(o, f"option {i + 1}") for i, o in enumerate(self.options))
        object.__setattr__(self, "options", opts)
        n = len(opts)
        if not MIN_OPTIONS <= n <= MAX_OPTIONS:
            raise UsageError(f"a question needs {MIN_OPTIONS} to {MAX_OPTIONS} options, got {n}")
        seen: Dict[str, int] = {}
        for i, o in enumerate(opts):
            key = o.casefold()
            if key in seen:
                raise UsageError(f"options {seen[key] + 1} and {i + 1} are the same ({o!r}): options must differ")
            seen[key] = i
        if self.correct is not None:
            if isinstance(self.correct, bool) or not isinstance(self.correct, (int, np.integer)):
                raise UsageError(f"the correct answer must be an option index, got {self.correct!r}")
            if not 0 <= int(self.correct) < n:
                raise UsageError(f"the correct answer index {self.correct} is out of range for {n} options")
            object.__setattr__(self, "correct", int(self.correct))
        if not self.order:
            object.__setattr__(self, "order", tuple(range(n)))
        elif sorted(self.order) != list(range(n)):
            raise UsageError(f"order {self.order} is not a permutation of {n} options")

    @property
    def n_options(self) -> int:
        return len(self.options)

    def permuted(self, permutation: int, seed: int = 0) -> "Item":
        """This item with its options in the order of permutation number ``permutation`` (0 = as given)."""
        perm = permutation_order(self.n_options, permutation, seed)
        opts = tuple(self.options[j] for j in perm)
        correct = None if self.correct is None else perm.index(self.correct)
        order = tuple(self.order[j] for j in perm)
        return Item(self.question, opts, correct, self.id, self.domain, self.variant, permutation, order)

    def to_dict(self) -> dict:
        return {"id": self.id, "domain": self.domain, "variant": self.variant, "question": self.question,
                "options": list(self.options), "correct": self.correct, "permutation": self.permutation,
                "order": list(self.order)}


def _block_bases(n: int, seed: int) -> List[Tuple[int, ...]]:
    """One order per block of n cyclic rotations for n <= 7: every order starting with option 0 (each of the n!
    orders is exactly one rotation of one of them); the identity first, the rest shuffled by ``seed``."""
    rest = [(0,) + p for p in itertools.permutations(range(1, n)) if p != tuple(range(1, n))]
    rng = np.random.default_rng([seed, n])
    return [tuple(range(n))] + [rest[i] for i in rng.permutation(len(rest))]


def _rotations(n: int, block: int, seed: int) -> List[int]:
    """The order in which block ``block`` visits its n rotations (block 0 starts with rotation 0: the identity)."""
    rng = np.random.default_rng([seed, n, block, 1])
    if block == 0:
        return [0] + [1 + int(i) for i in rng.permutation(n - 1)]
    return [int(i) for i in rng.permutation(n)]


def permutation_order(n: int, k: int, seed: int = 0) -> List[int]:
    """The k-th answer order for n options: a list ``perm`` with shown option i = original option perm[i].

    The orders come in **balanced blocks** of n: block b = k // n holds the n cyclic rotations of one base order
    (a Latin square), so every option sits in every position exactly once per block.  For n <= 7 the n!/n blocks
    together are all n! distinct orders (the first n! permutations: each order once, each option in each position
    (n-1)! times); k >= n! repeats whole cycles.  k = 0 is the original order.  Bases (and the order of the
    rotations inside a block) are shuffled by ``seed``; for n > 7 the bases are seeded random orders.
    """
    if k < 0:
        raise UsageError(f"permutation must be >= 0, got {k}")
    if k == 0:
        return list(range(n))
    block, j = divmod(k, n)
    if n <= 7:
        bases = _block_bases(n, seed)
        block %= len(bases)
        base = bases[block]
    else:
        base = tuple(range(n)) if block == 0 else \
            tuple(int(i) for i in np.random.default_rng([seed, n, block]).permutation(n))
    r = _rotations(n, block, seed)[j]
    return [base[(i + r) % n] for i in range(n)]


def distinct_orders(n: int) -> int:
    """How many distinct answer orders n options have (n!)."""
    return math.factorial(n)


def balanced_permutation_count(n: int, requested: Optional[int] = None) -> int:
    """The number of answer orders a sweep runs for an item with n options.

    ``None`` = all distinct orders (n!; above ``MAX_DEFAULT_ORDERS`` the largest whole number of n-order blocks that
    fits in it).  A request up to n! is run as asked (the first orders: balanced when it is a multiple of n, see
    :func:`permutation_note`); a request above n! is rounded *up* to whole cycles of all n! orders -- every order
    equally often, never a partial block."""
    full = distinct_orders(n)
    if requested is None:
        return full if full <= MAX_DEFAULT_ORDERS else n * (MAX_DEFAULT_ORDERS // n)
    if isinstance(requested, bool) or not isinstance(requested, (int, np.integer)) or requested < 1:
        raise UsageError(f"the number of answer orders must be a whole number >= 1, got {requested!r}")
    requested = int(requested)
    if requested <= full:
        return requested
    return -(-requested // full) * full


def permutation_note(n: int, requested: Optional[int]) -> Optional[str]:
    """A sentence on a request for ``requested`` orders of n options: rounded up to whole cycles, or too few for
    balanced positions (None when it is balanced as asked)."""
    if requested is None:
        return None
    got = balanced_permutation_count(n, requested)
    full = distinct_orders(n)
    if got != requested:
        return (f"{requested} answer orders asked for {n} options: running {got}, {got // full} whole cycles of all "
                f"{full} distinct orders (every order equally often); a partial cycle would repeat some orders and "
                "put some options in some positions more often")
    if got % n:
        return (f"{requested} answer orders for {n} options is not a multiple of {n}: options do not sit in every "
                f"position equally often (use a multiple of {n}, or the default: all {min(full, MAX_DEFAULT_ORDERS)} "
                "orders), so position statistics are confounded with the design")
    return None


@dataclass
class BenchmarkItem:
    id: str
    question: str
    answer: str
    distractors: List[str]
    domain: Optional[str] = None
    easy_distractors: List[str] = field(default_factory=list)
    nca_distractor: Optional[str] = None
    extra: dict = field(default_factory=dict)

    def available_variants(self) -> List[str]:
        out = ["base"]
        if self.easy_distractors:
            out.append("easy")
        if self.nca_distractor:
            out.append("nca")
        return out

    def variant(self, name: str = "base") -> Item:
        if name == "base":
            opts, correct = [self.answer, *self.distractors], 0
        elif name == "easy":
            if not self.easy_distractors:
                raise UsageError(f"item {self.id}: no easy_distractors, so there is no 'easy' variant")
            opts, correct = [self.answer, *self.easy_distractors], 0
        elif name == "nca":
            if not self.nca_distractor:
                raise UsageError(f"item {self.id}: no nca_distractor, so there is no 'nca' variant")
            opts, correct = [self.nca_distractor, *self.distractors], None
        else:
            raise UsageError(f"unknown variant {name!r}: use one of {', '.join(VARIANTS)}")
        return Item(self.question, tuple(opts), correct, self.id, self.domain, name)

    def instance(self, variant: str = "base", permutation: int = 0, seed: int = 0) -> Item:
        return self.variant(variant).permuted(permutation, seed)

    def to_dict(self) -> dict:
        d = dict(self.extra)
        d.update({"id": self.id, "domain": self.domain, "question": self.question, "answer": self.answer,
                  "distractors": list(self.distractors), "easy_distractors": list(self.easy_distractors),
                  "nca_distractor": self.nca_distractor})
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BenchmarkItem":
        if not isinstance(d, dict):
            raise UsageError("an item must be a JSON object")
        missing = [k for k in REQUIRED_FIELDS if k not in d]
        if missing:
            raise UsageError(f"missing field(s) {', '.join(missing)}")
        iid = d["id"]
        if not isinstance(iid, (str, int)) or isinstance(iid, bool) or not str(iid).strip():
            raise UsageError("field 'id' must be a non-empty string")
        if isinstance(iid, int) and not -2**63 <= iid < 2**63:
            raise UsageError("field 'id' is a number too large to be an id: use a string")
        if isinstance(iid, str):
            check_text(iid, "field 'id'")
        for key in ("distractors", "easy_distractors"):
            v = d.get(key, [])
            if v is None and key == "easy_distractors":  # an item may have no easy variant
                v = []
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                got = "null" if v is None else type(v).__name__
                raise UsageError(f"field {key!r} must be a list of strings, got {got}")
        domain = d.get("domain")
        if domain is not None and not isinstance(domain, str):
            raise UsageError("field 'domain' must be a string")
        if domain is not None:
            check_text(domain, "field 'domain'")
        nca = d.get("nca_distractor")
        if nca is not None and not isinstance(nca, str):
            raise UsageError("field 'nca_distractor' must be a string")
        known = {"id", "domain", "question", "answer", "distractors", "easy_distractors", "nca_distractor"}
        item = cls(
            id=str(iid).strip(),
            question=d["question"],
            answer=d["answer"],
            distractors=list(d["distractors"]),
            domain=domain,
            easy_distractors=list(d.get("easy_distractors") or []),
            nca_distractor=nca if (nca or "").strip() else None,
            extra={k: v for k, v in d.items() if k not in known},
        )
        for v in item.available_variants():  # validates text, counts and duplicates of each variant
            try:
                item.variant(v)
            except UsageError as exc:
                raise UsageError(f"variant {v!r}: {exc}") from None
        return item


@dataclass
class LineError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class Benchmark:
    items: List[BenchmarkItem]
    errors: List[LineError] = field(default_factory=list)
    source: Optional[str] = None

    def __len__(self) -> int:
        return len(self.items)

    def get(self, item_id: str) -> BenchmarkItem:
        for it in self.items:
            if it.id == item_id:
                return it
        raise UsageError(f"no item with id {item_id!r} in {self.source or 'the benchmark'}")

    @property
    def domains(self) -> List[str]:
        return sorted({it.domain for it in self.items if it.domain})


def split_lines(text: str) -> List[str]:
    """The lines of JSONL text, split on newlines only (``str.splitlines`` would also split on U+2028, U+0085
    and other characters that may stand raw inside a JSON string, shifting every later line number)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _depth(obj) -> int:
    """Nesting depth of parsed JSON (iterative: no recursion on hostile input)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, (dict, list)):
            deepest = max(deepest, d)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return deepest


def parse_json_line(line: str):
    """One JSONL line -> (object, None) or (None, reason): size, nesting, numbers and text checked first."""
    if len(line) > MAX_LINE_CHARS:
        return None, f"the line is {len(line):,} characters long (at most {MAX_LINE_CHARS:,} for one item)"
    try:
        d = json.loads(line)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at column {exc.colno})"
    except RecursionError:
        return None, f"JSON nested too deeply (at most {MAX_JSON_DEPTH} levels)"
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        return None, f"not valid JSON ({str(exc).split(':')[0]})"
    if _depth(d) > MAX_JSON_DEPTH:
        return None, f"JSON nested too deeply (at most {MAX_JSON_DEPTH} levels)"
    try:
        json.dumps(d, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return None, "contains an unpaired surrogate (e.g. \\ud800), which is not valid text: fix the file's encoding"
    return d, None


def parse_benchmark_lines(lines: Union[str, Iterable[str]], source: Optional[str] = None) -> Benchmark:
    """Parse JSONL text (a string, or its lines); every bad line is reported with its number and reason, good
    lines still load."""
    if isinstance(lines, str):
        lines = split_lines(lines)
    items: List[BenchmarkItem] = []
    errors: List[LineError] = []
    seen: Dict[str, int] = {}
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        d, reason = parse_json_line(line)
        if reason is not None:
            errors.append(LineError(n, reason))
            continue
        try:
            item = BenchmarkItem.from_dict(d)
        except UsageError as exc:
            errors.append(LineError(n, str(exc)))
            continue
        if item.id in seen:
            errors.append(LineError(n, f"duplicate id {item.id!r} (first on line {seen[item.id]})"))
            continue
        seen[item.id] = n
        items.append(item)
    return Benchmark(items, errors, source)


def read_benchmark_lines(path: Union[str, Path]) -> List[str]:
    """The lines of a benchmark file; a missing, unreadable or non-UTF-8 file is a UsageError naming it."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"benchmark file not found: {p}")
    if not p.is_file():
        raise UsageError(f"not a file: {p}")
    try:
        text = p.read_text(encoding="utf-8-sig")  # a byte-order mark is accepted, as the app's upload does
    except UnicodeDecodeError:
        raise UsageError(f"{p} is not UTF-8 text: a benchmark is a JSONL file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {p}: {exc.strerror or exc}") from None
    return split_lines(text)


def load_benchmark(path: Union[str, Path]) -> Benchmark:
    return parse_benchmark_lines(read_benchmark_lines(path), source=str(Path(path)))
