"""Check a benchmark JSONL file against the LoopLens benchmark design.

The design (docs/method.md, "The benchmark design") asks every item for three plausible ``distractors``,
three unrelated ``easy_distractors`` and a fourth plausible ``nca_distractor``, so that all three variants
(base, easy, nca) exist.  :func:`validate_file` reports every problem it finds, each with its line number::

    >>> for p in validate_file("data/benchmarks/general-qa.jsonl"):
    ...     print(p)          # e.g. "line 12 (fact-003): answer and easy distractor 2 are the same ('Paris')"

Checks: valid JSON and the item schema (via :func:`backend.items.parse_benchmark_lines`), the fields of this
design (3 + 3 + 1 distractors, a non-empty domain), duplicate ids, duplicate questions (ignoring case and
whitespace), option collisions within and across variants (answer, distractors, easy distractors and the nca
distractor must all differ, ignoring case and whitespace), option length (<= 60 characters), question length
(<= 300 characters), empty strings, and that every variant is constructible with
:meth:`backend.items.BenchmarkItem.variant`.  Domains outside :data:`backend.items.DOMAINS` are accepted
unless ``strict=True``.

:func:`main` is the command-line entry (``python -m backend validate FILE``): exit status 0 for a clean
file, 1 if it has problems, 2 if it cannot be read.
"""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, TextIO, Tuple, Union

from .errors import LoopLensError, UsageError
from .items import DOMAINS, VARIANTS, BenchmarkItem, parse_benchmark_lines, parse_json_line, read_benchmark_lines

MAX_OPTION_CHARS = 60
MAX_QUESTION_CHARS = 300
N_DISTRACTORS = 3
N_EASY_DISTRACTORS = 3


@dataclass(frozen=True)
class Problem:
    """One problem in a benchmark file. ``line`` is 1-based (None for whole-file problems)."""

    line: Optional[int]
    item_id: Optional[str]
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "file"
        if self.item_id:
            where += f" ({self.item_id})"
        return f"{where}: {self.message}"


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _raw_id(d) -> Optional[str]:
    if isinstance(d, dict) and isinstance(d.get("id"), (str, int)) and not isinstance(d.get("id"), bool):
        return str(d["id"]).strip() or None
    return None


def _roles(item: BenchmarkItem) -> List[Tuple[str, object]]:
    roles: List[Tuple[str, object]] = [("answer", item.answer)]
    roles += [(f"distractor {i + 1}", t) for i, t in enumerate(item.distractors)]
    roles += [(f"easy distractor {i + 1}", t) for i, t in enumerate(item.easy_distractors)]
    if item.nca_distractor is not None:
        roles.append(("nca_distractor", item.nca_distractor))
    return roles


def check_item(item: BenchmarkItem, raw: dict, strict: bool = False) -> List[str]:
    """Problems of one parsed item (messages only; no line numbers)."""
    out: List[str] = []
    # domain
    dom = item.domain
    if dom is None or not dom.strip():
        out.append("missing or empty 'domain'" + (f" (one of {', '.join(DOMAINS)})" if strict else ""))
    elif strict and dom.strip() not in DOMAINS:
        out.append(f"unknown domain {dom!r}: use one of {', '.join(DOMAINS)}")
    # fields of this design
    if len(item.distractors) != N_DISTRACTORS:
        out.append(f"'distractors' must have {N_DISTRACTORS} entries, has {len(item.distractors)}")
    if "easy_distractors" not in raw or raw.get("easy_distractors") is None:
        out.append("missing field 'easy_distractors' (a list of 3 obviously unrelated options)")
    elif len(item.easy_distractors) != N_EASY_DISTRACTORS:
        out.append(f"'easy_distractors' must have {N_EASY_DISTRACTORS} entries, has {len(item.easy_distractors)}")
    nca_raw = raw.get("nca_distractor")
    if "nca_distractor" not in raw or nca_raw is None:
        out.append("missing field 'nca_distractor' (a 4th plausible wrong option)")
    elif isinstance(nca_raw, str) and not nca_raw.strip():
        out.append("'nca_distractor' is empty")
    # text: empty and length
    q = item.question
    if not isinstance(q, str):
        out.append(f"the question must be text, got {type(q).__name__}")
    elif not q.strip():
        out.append("the question is empty")
    elif len(q.strip()) > MAX_QUESTION_CHARS:
        out.append(f"the question is {len(q.strip())} characters long (at most {MAX_QUESTION_CHARS})")
    roles = _roles(item)
    for role, text in roles:
        if not isinstance(text, str):
            out.append(f"{role} must be text, got {type(text).__name__}")
        elif not text.strip():
            out.append(f"{role} is empty")
        elif len(text.strip()) > MAX_OPTION_CHARS:
            out.append(f"{role} is {len(text.strip())} characters long (at most {MAX_OPTION_CHARS}): {text.strip()[:30]!r}...")
    # collisions within and across variants
    seen: Dict[str, str] = {}
    for role, text in roles:
        if not isinstance(text, str) or not text.strip():
            continue
        key = _norm(text)
        if key in seen:
            out.append(f"{seen[key]} and {role} are the same ({text.strip()!r}): all options of an item must differ")
        else:
            seen[key] = role
    # every variant constructible (a backstop: the checks above explain every failure they know of; variants
    # whose fields are missing are reported above)
    if out:
        return out
    for v in VARIANTS:
        if v == "easy" and not item.easy_distractors:
            continue
        if v == "nca" and not item.nca_distractor:
            continue
        try:
            item.variant(v)
        except UsageError as exc:
            out.append(f"variant {v!r} cannot be built: {exc}")
    return out


def _lenient_item(raw: dict) -> Optional[BenchmarkItem]:
    """The item of a line, even when one of its variants cannot be built (so the detailed checks can say why).

    None if the line fails the schema for another reason (that reason is then reported as it is).
    """
    try:
        return BenchmarkItem.from_dict(raw)
    except UsageError as exc:
        if not str(exc).startswith("variant "):
            return None
    nca = raw.get("nca_distractor")
    known = {"id", "domain", "question", "answer", "distractors", "easy_distractors", "nca_distractor"}
    return BenchmarkItem(
        id=str(raw["id"]).strip(), question=raw["question"], answer=raw["answer"],
        distractors=list(raw["distractors"]), domain=raw.get("domain"),
        easy_distractors=list(raw.get("easy_distractors") or []),
        nca_distractor=nca if (nca or "").strip() else None,
        extra={k: v for k, v in raw.items() if k not in known},
    )


def validate_lines(lines: Sequence[str], strict: bool = False) -> Tuple[List[Problem], List[BenchmarkItem]]:
    """Problems of the given JSONL lines, and the items that parsed (with or without other problems)."""
    lines = list(lines)
    bench = parse_benchmark_lines(lines)
    errors = {e.line: e.reason for e in bench.errors if not e.reason.startswith("duplicate id")}
    problems: List[Problem] = []
    items: List[BenchmarkItem] = []
    first_id: Dict[str, int] = {}
    first_question: Dict[str, Tuple[int, Optional[str]]] = {}
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        raw, _ = parse_json_line(line)
        iid = _raw_id(raw)
        found: List[str] = []
        # ids and questions are compared over every line that has them, even lines with other problems
        if iid is not None:
            if iid in first_id:
                found.append(f"duplicate id {iid!r} (first on line {first_id[iid]})")
            else:
                first_id[iid] = n
        if isinstance(raw, dict) and isinstance(raw.get("question"), str) and raw["question"].strip():
            qkey = _norm(raw["question"])
            if qkey in first_question:
                ln, other = first_question[qkey]
                found.append(f"duplicate question (same as line {ln}" + (f", {other})" if other else ")"))
            else:
                first_question[qkey] = (n, iid)
        item = _lenient_item(raw) if n in errors and isinstance(raw, dict) else None
        if n not in errors:
            item = BenchmarkItem.from_dict(raw)  # succeeded inside parse_benchmark_lines
        if item is None:
            problems.append(Problem(n, iid, errors[n]))
        else:
            items.append(item)
            detail = check_item(item, raw, strict=strict)
            if n in errors and not detail:  # the detailed checks should explain every schema error; if not, say it
                detail = [errors[n]]
            found = detail + found
        problems.extend(Problem(n, iid, m) for m in found)
    if not problems and not items:
        problems.append(Problem(None, None, "the file has no items"))
    return problems, items


def validate_file(path: Union[str, Path], strict: bool = False) -> List[Problem]:
    """Every problem of the benchmark file at ``path`` (empty list = clean).

    Raises :class:`backend.errors.UsageError` if the file does not exist or cannot be read as UTF-8 text.
    """
    return validate_lines(read_benchmark_lines(path), strict=strict)[0]


def domain_counts(items: Sequence[BenchmarkItem]) -> Dict[str, int]:
    """Items per domain: the known domains first (in DOMAINS order), then any others alphabetically."""
    c = Counter((it.domain or "").strip() or "(none)" for it in items)
    order = [d for d in DOMAINS if d in c] + sorted(d for d in c if d not in DOMAINS)
    return {d: c[d] for d in order}


def main(path: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr, strict: bool = False) -> int:
    """Validate ``path``; print each problem (or an OK summary). 0 = clean, 1 = problems, 2 = unreadable."""
    try:
        problems, items = validate_lines(read_benchmark_lines(path), strict=strict)
    except LoopLensError as exc:
        print(f"error: {exc}", file=err)
        return 2
    if problems:
        for p in problems:
            print(str(p), file=out)
        n_lines = len({p.line for p in problems})
        print(f"FAILED: {len(problems)} problem(s) on {n_lines} line(s) of {path}", file=out)
        return 1
    counts = ", ".join(f"{d} {n}" for d, n in domain_counts(items).items())
    print(f"OK: {len(items)} items ({counts})", file=out)
    return 0
