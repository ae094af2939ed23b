"""Which results the Benchmark page shows: a shipped report, a saved ``report.json``, or a sweep directory whose
report is computed on the fly.  A path typed into the page is checked here (restricted to
$LOOPLENS_RESULTS_ROOTS when that is set, must exist, must hold a report or sweep results) before anything is
read.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from .errors import UsageError
from .report import has_rows
from .settings import ENV_RESULTS_ROOTS


@dataclass(frozen=True)
class ResultsSource:
    """A checked path: ``kind`` is ``"report"`` (a saved report.json) or ``"rows"`` (a sweep directory, or one
    Parquet file); ``mtime`` changes whenever the results do (a cache key)."""

    kind: str
    path: Path
    mtime: float


def results_roots() -> Optional[List[Path]]:
    """Directories results must live under, from $LOOPLENS_RESULTS_ROOTS (os.pathsep-separated); None: anywhere."""
    raw = os.environ.get(ENV_RESULTS_ROOTS, "").strip()
    if not raw:
        return None
    return [Path(r).expanduser().resolve() for r in raw.split(os.pathsep) if r.strip()]


def results_source(text: str) -> ResultsSource:
    """The results a typed path points at, or a UsageError naming what is wrong with it."""
    p = Path(text.strip()).expanduser()
    roots = results_roots()
    if roots is not None:
        rp = p.resolve()
        if not any(rp == r or r in rp.parents for r in roots):
            raise UsageError(f"{p}: results directories are restricted to ${ENV_RESULTS_ROOTS}")
    if not p.exists():
        raise UsageError(f"{p} does not exist")
    if (p.is_file() and p.suffix == ".json") or (p.is_dir() and (p / "report.json").is_file() and not has_rows(p)):
        f = p if p.is_file() else p / "report.json"
        return ResultsSource("report", f, f.stat().st_mtime)
    if p.is_dir() and not has_rows(p):
        raise UsageError(f"{p} holds no sweep results (no part-*.parquet)")
    parts = [p] if p.is_file() else list(p.glob("part-*.parquet"))
    return ResultsSource("rows", p, max((q.stat().st_mtime for q in parts), default=0.0))


# The report fields the Benchmark page reads, with the JSON type each must have (lists hold objects).
REPORT_FIELDS = {"meta": dict, "headline": list, "groups": list, "exploration": dict, "entropy_curves": list,
                 "exploration_hist": dict, "destinations": list}
_JSON_NAMES = {dict: "an object", list: "a list", str: "text", int: "a number", float: "a number",
               bool: "true/false", type(None): "null"}


def check_report(rep, where: str) -> dict:
    """``rep`` if it has the shape of a LoopLens report the page can show, else a UsageError naming the first field
    that is missing or of the wrong type (a damaged file, or one from another version)."""
    def bad(what: str) -> UsageError:
        return UsageError(f"{where} is not a report this version can show ({what}); recompute it with "
                          "`python -m backend report RESULTS_DIR --save DIR`")

    if not isinstance(rep, dict):
        raise bad(f"the file holds {_JSON_NAMES.get(type(rep), type(rep).__name__)}, not an object")
    for name, kind in REPORT_FIELDS.items():
        if name not in rep:
            raise bad(f"no field {name!r}")
        v = rep[name]
        if not isinstance(v, kind):
            raise bad(f"field {name!r} is {_JSON_NAMES.get(type(v), type(v).__name__)}, not {_JSON_NAMES[kind]}")
        items = v if isinstance(v, list) else list(v.values()) if name == "exploration_hist" else []
        if any(not isinstance(x, dict) for x in items):
            raise bad(f"field {name!r} holds entries that are not objects")
    return rep
