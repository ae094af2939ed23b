"""UI-independent glue for the Streamlit dashboard (no Streamlit here): defaults, query parameters, uploads,
run-cache keys and store, exports, seed robustness, and per-variant summaries.

Everything a page needs that is not a widget lives here, so it can be tested without a browser.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Hashable, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .errors import LoopLensError, UsageError
from .items import MAX_OPTIONS, MIN_OPTIONS, VARIANTS, Benchmark, BenchmarkItem, Item, load_benchmark, \
    parse_benchmark_lines

from .settings import (BENCHMARKS_DIR, DEFAULT_N_SEEDS, DEFAULT_PERMUTATIONS, DEFAULT_SEED, DEFAULT_STEPS,  # noqa: E402
                       ENV_DEFAULT_MODEL as DEFAULT_MODEL_ENV, ENV_TORCH_THREADS as THREADS_ENV, LETTERS, REPO_ROOT,
                       RESULTS_DIR)
MAX_UPLOAD_BYTES = 2 * 1024 * 1024  # uploaded benchmark files (the server's own limit is in .streamlit/config.toml)
MAX_UPLOAD_LINES = 5000

# Shown when no benchmark file exists yet, so the app always opens with a question loaded.
EXAMPLE_ITEM = BenchmarkItem(
    id="example-001", domain="factual", question="What is the capital of Australia?", answer="Canberra",
    distractors=["Sydney", "Melbourne", "Perth"], easy_distractors=["Banana", "Violin", "Thursday"],
    nca_distractor="Brisbane",
)


# ---------------------------------------------------------------------------------------------- set-up
def configure_torch_threads(n: Optional[int] = None) -> int:
    """Intra-op threads for torch (default: half the cores, at least 1; $LOOPLENS_TORCH_THREADS overrides).

    A dashboard shares the CPU with its web server; on small machines oversubscribed torch threads make a
    forward tens of times slower.
    """
    import torch

    if n is None:
        raw = os.environ.get(THREADS_ENV, "").strip()
        n = int(raw) if raw.isdigit() and int(raw) > 0 else max(1, (os.cpu_count() or 2) // 2)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    try:  # numpy/scikit-learn BLAS pools too: the dashboard's matrices are small
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n)
    except ImportError:  # pragma: no cover
        pass
    return n


def default_model() -> Optional[str]:
    """$LOOPLENS_DEFAULT_MODEL, else the first shipped model (None if there is none)."""
    from .models import default_model_name

    env = os.environ.get(DEFAULT_MODEL_ENV, "").strip()
    return env or default_model_name()


def model_choices() -> List[str]:
    from .models import shipped_models

    names = list(shipped_models())
    env = os.environ.get(DEFAULT_MODEL_ENV, "").strip()
    if env and env not in names:
        names.insert(0, env)
    return names


def benchmark_files(model: Optional[str] = None) -> List[Path]:
    """Benchmark JSONL files shipped in data/benchmarks; the model's own test set first, then general-qa."""
    if not BENCHMARKS_DIR.is_dir():
        return []
    files = sorted(BENCHMARKS_DIR.glob("*.jsonl"))
    name = Path(model).name if model else None

    def rank(p: Path):
        if name and p.name == f"{name}-test.jsonl":
            return (0, p.name)
        if p.name == "general-qa.jsonl":
            return (1, p.name)
        return (2, p.name)

    return sorted(files, key=rank)


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
    bench = parse_benchmark_lines(lines, source=name)
    if not bench.items and not bench.errors:
        raise UsageError(f"{name} is empty: a benchmark has one JSON object per line")
    return bench


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
    import re

    opts = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        line = re.sub(r"^[A-Ja-j][\)\.:]\s+", "", line)
        opts.append(line)
    if not MIN_OPTIONS <= len(opts) <= MAX_OPTIONS:
        raise UsageError(f"type {MIN_OPTIONS} to {MAX_OPTIONS} options, one per line (got {len(opts)})")
    return opts


def custom_item(question: str, options_text: str, correct_letter: Optional[str]) -> Item:
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
                if hi < lo or hi - lo > 63:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise UsageError(f"seeds must be whole numbers like '0' or '0, 1, 2' or '0-4', got {part!r}") from None
    if any(x < 0 or x >= 2**31 for x in out):
        raise UsageError("seeds must be between 0 and 2147483647")
    if len(out) > 64:
        raise UsageError("at most 64 seeds at once")
    return out


# ---------------------------------------------------------------------------------------------- query params
@dataclass
class ViewState:
    """What a shareable URL fixes: model, source, item, variant, permutation, steps, seed, init scale."""

    model: Optional[str] = None
    bench: Optional[str] = None  # benchmark file name in data/benchmarks
    item: Optional[str] = None
    variant: str = "base"
    perm: int = 0
    steps: int = DEFAULT_STEPS
    seed: int = DEFAULT_SEED
    init: float = 1.0
    q: Optional[str] = None  # custom question
    opts: Optional[str] = None  # custom options, "|"-separated
    ans: Optional[str] = None  # custom correct letter

    def to_query(self, defaults: Optional["ViewState"] = None) -> Dict[str, str]:
        out = {}
        for k in self.__dataclass_fields__:
            v = getattr(self, k)
            if v is None:
                continue
            out[k] = str(v)
        return out


def parse_query(params: Mapping[str, object]) -> Tuple[ViewState, List[str]]:
    """Query parameters -> ViewState; invalid values are dropped with a message (never an exception)."""
    st = ViewState()
    problems: List[str] = []

    def get(k):
        v = params.get(k)
        if isinstance(v, (list, tuple)):
            v = v[-1] if v else None
        return None if v is None else str(v)

    from .trace import MAX_STEPS, MIN_STEPS

    for k in ("model", "bench", "item", "q", "opts", "ans"):
        v = get(k)
        if v is not None and v.strip():
            setattr(st, k, v.strip()[:4000])
    v = get("variant")
    if v is not None:
        if v in VARIANTS:
            st.variant = v
        else:
            problems.append(f"variant {v!r} in the link is not one of {', '.join(VARIANTS)}; using base")
    for k, lo, hi in (("perm", 0, 10**6), ("steps", MIN_STEPS, MAX_STEPS), ("seed", 0, 2**31 - 1)):
        v = get(k)
        if v is None:
            continue
        try:
            x = int(v)
            if not lo <= x <= hi:
                raise ValueError
            setattr(st, k, x)
        except ValueError:
            problems.append(f"{k}={v!r} in the link is not a whole number in {lo}..{hi}; using {getattr(st, k)}")
    v = get("init")
    if v is not None:
        try:
            x = float(v)
            if not (math.isfinite(x) and 0 <= x <= 100):
                raise ValueError
            st.init = x
        except ValueError:
            problems.append(f"init={v!r} in the link is not a number in 0..100; using {st.init}")
    if st.bench is not None and ("/" in st.bench or "\\" in st.bench or not st.bench.endswith(".jsonl")):
        problems.append(f"bench={st.bench!r} is not a shipped benchmark file name; ignored")
        st.bench = None
    return st, problems


# ---------------------------------------------------------------------------------------------- run cache
def item_key(item: Item) -> tuple:
    return (item.question, tuple(item.options), item.correct, item.id, item.domain, item.variant, item.permutation,
            tuple(item.order))


def run_key(model_path: str, checkpoint_hash: str, items: Sequence[Item], steps: int, seeds, init_scale: float,
            template_json: Optional[str], keep_all_states: bool = False) -> str:
    """A stable key for one traced run (same inputs -> same key -> cached result)."""
    payload = json.dumps([str(model_path), checkpoint_hash, [item_key(i) for i in items], int(steps),
                          list(seeds) if isinstance(seeds, (list, tuple)) else seeds, float(init_scale),
                          template_json, bool(keep_all_states)], default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class TraceStore:
    """A small thread-safe LRU of finished runs (shared across sessions through st.cache_resource)."""

    def __init__(self, maxsize: int = 64):
        self.maxsize = maxsize
        self._d: "OrderedDict[Hashable, object]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
            return None

    def put(self, key, value) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.maxsize:
                self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


# ---------------------------------------------------------------------------------------------- errors
def friendly_error(exc: BaseException) -> str:
    """A one-paragraph message for the page (no traceback)."""
    if isinstance(exc, LoopLensError):
        return str(exc)
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return ("Out of memory while running the model. Try fewer steps, fewer seeds or permutations, a smaller "
                "model, or float32 on a machine with more memory.")
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return f"File problem: {exc}"
    return f"Unexpected problem ({type(exc).__name__}): {exc}"


# ---------------------------------------------------------------------------------------------- exports
def run_parameters(trace, extra: Optional[dict] = None) -> dict:
    d = {"model": trace.model, "checkpoint_hash": trace.checkpoint_hash, "steps": trace.steps, "seed": trace.seed,
         "init_scale": trace.init_scale, "template": trace.template, "item_id": trace.item_id,
         "variant": trace.variant, "permutation": trace.permutation, "order": list(trace.order)}
    d.update(extra or {})
    return d


def traces_json(traces: Sequence, extra: Optional[dict] = None) -> str:
    """Every trace (all parameters, seed, beliefs, masses, metrics) as one JSON document."""
    return json.dumps({"schema": "looplens.export/1", "parameters": extra or {},
                       "traces": [t.to_dict() for t in traces]}, indent=1)


def traces_csv(traces: Sequence, extra: Optional[dict] = None) -> str:
    """One row per (trace, step, option) with every run parameter and the seed in columns."""
    import pandas as pd

    frames = []
    for j, t in enumerate(traces):
        df = t.to_frame()
        df.insert(0, "run", j)
        df["template"] = json.dumps(t.template)
        for k, v in (extra or {}).items():
            df[k] = v if np.isscalar(v) or v is None else json.dumps(v)
        frames.append(df)
    return pd.concat(frames, ignore_index=True).to_csv(index=False)


def chromium_path() -> Optional[str]:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


PNG_UNAVAILABLE = ("PNG export needs a Chromium/Chrome on the server (Debian: apt-get install -y chromium); "
                   "none was found. Download the standalone HTML instead: it opens offline in any browser and "
                   "its camera button saves a PNG.")


def figure_png(fig, scale: float = 2.0) -> bytes:
    """PNG bytes through kaleido (needs a Chromium); raises LoopLensError with a clear message otherwise."""
    if chromium_path() is None:
        raise LoopLensError(PNG_UNAVAILABLE)
    try:
        return fig.to_image(format="png", scale=scale)
    except Exception as exc:  # kaleido reports a missing/broken browser in many ways
        raise LoopLensError(f"PNG export failed ({type(exc).__name__}: {str(exc)[:200]}). "
                            "Download the standalone HTML instead.") from None


# ---------------------------------------------------------------------------------------------- summaries
def metric_summary(trace, option_ranks: Optional[Mapping[int, int]] = None) -> Dict[str, str]:
    """The Explore page's metric panel as label -> text."""
    m = trace.metrics
    fa = m.final_answer
    out = {
        "Final answer": f"{LETTERS[fa]}) {trace.options[fa]}",
        "Correct?": "no correct option" if trace.correct is None else ("yes" if m.is_correct else
                                                                        f"no (correct: {LETTERS[trace.correct]})"),
        "Exploration length": f"{m.exploration_end} steps" if m.converged else "never converged",
        "Commitments": ", ".join(f"{LETTERS[c.option]} (steps {c.start}-{c.end})" for c in m.commitments) or "none",
        "Backtracks": ", ".join(f"{LETTERS[a.option]} -> {LETTERS[b.option]} (step {b.start})"
                                for a, b in m.backtracks) or "none",
    }
    if m.abandoned:
        parts = []
        for a in m.abandoned:
            r = (option_ranks or {}).get(a)
            parts.append(f"{LETTERS[a]}) {trace.options[a]}" + (f" (similarity rank {r})" if r else ""))
        out["Abandoned answers"] = "; ".join(parts)
    else:
        out["Abandoned answers"] = "none"
    return out


def option_similarity_ranks(similarity: Optional[dict], trace) -> Dict[int, int]:
    """Shown option index -> similarity rank among the variant's distractors (from a precomputed file)."""
    if not similarity or not trace.item_id:
        return {}
    from .similarity import distractor_rank

    out = {}
    for i, opt in enumerate(trace.options):
        if trace.correct is not None and i == trace.correct:
            continue
        try:
            r = distractor_rank(similarity, trace.item_id, opt, trace.variant or "base")
        except LoopLensError:
            r = None
        if r is not None:
            out[i] = int(r)
    return out


def similarity_for(bench_path: Optional[Path]) -> Optional[dict]:
    """The precomputed similarity file next to a benchmark, if present and readable."""
    if bench_path is None:
        return None
    try:
        from .similarity import default_similarity_path, load_similarity

        p = default_similarity_path(bench_path)
        return load_similarity(p) if p.is_file() else None
    except (ImportError, LoopLensError):
        return None


def seed_robustness(traces: Sequence) -> Tuple["object", str]:
    """Per-seed table and a sentence on agreement (e.g. a backtrack under only some seeds)."""
    import pandas as pd

    rows = []
    for t in traces:
        m = t.metrics
        rows.append({"seed": t.seed, "final answer": LETTERS[m.final_answer],
                     "correct": None if m.is_correct is None else bool(m.is_correct),
                     "exploration length": m.exploration_end if m.converged else None,
                     "backtracks": ", ".join(f"{LETTERS[a.option]} -> {LETTERS[b.option]}" for a, b in m.backtracks),
                     "final entropy": round(float(m.entropy[-1]), 4)})
    df = pd.DataFrame(rows)
    n = len(traces)
    finals = {LETTERS[t.metrics.final_answer] for t in traces}
    bt = [t.seed for t in traces if t.metrics.backtracked]
    parts = []
    parts.append(f"All {n} seeds end on {finals.pop()}." if len(finals) == 1 else
                 f"The seeds disagree on the final answer ({', '.join(sorted({LETTERS[t.metrics.final_answer] for t in traces}))}).")
    if not bt:
        parts.append("No seed backtracks.")
    elif len(bt) == n:
        parts.append(f"All {n} seeds backtrack.")
    else:
        parts.append(f"A backtrack occurs under only {len(bt)} of {n} seeds (seeds {', '.join(map(str, bt))}): "
                     "it may be seed noise rather than a property of the question.")
    return df, " ".join(parts)


def original_order_probs(trace) -> np.ndarray:
    """Belief [K, n] with columns in the item's original option order (undoing the permutation)."""
    p = np.asarray(trace.probs)
    order = list(trace.order) or list(range(p.shape[1]))
    out = np.empty_like(p)
    out[:, order] = p
    return out


def variant_bands(traces_by_variant: Mapping[str, Sequence], n_boot: int = 1000) -> Dict[str, dict]:
    """Per variant: mean belief per original option over permutations with a 95% bootstrap band."""
    from .metrics import belief_band

    out = {}
    for v, trs in traces_by_variant.items():
        stack = np.stack([original_order_probs(t) for t in trs])
        mean, lo, hi = belief_band(stack, n_boot=n_boot)
        t0 = trs[0]
        order = list(t0.order) or list(range(t0.n_options))
        options = [None] * t0.n_options
        for i, j in enumerate(order):
            options[j] = t0.options[i]
        correct = None if t0.correct is None else order[t0.correct]
        out[v] = {"mean": mean, "lo": lo, "hi": hi, "options": options, "correct": correct, "n": len(trs)}
    return out


def variant_entropy_bands(traces_by_variant: Mapping[str, Sequence], n_boot: int = 1000) -> Dict[str, tuple]:
    from .metrics import entropy_band

    return {v: entropy_band(np.stack([t.probs for t in trs]), n_boot=n_boot) for v, trs in traces_by_variant.items()}


def variant_table(traces_by_variant: Mapping[str, Sequence]):
    """One row per variant: accuracy, backtracking, exploration, entropy over the permutations."""
    import pandas as pd

    from .metrics import bootstrap_ci

    rows = []
    for v, trs in traces_by_variant.items():
        ms = [t.metrics for t in trs]
        n = len(ms)
        ex = [m.exploration_end for m in ms if m.converged]
        acc = [float(m.is_correct) for m in ms if m.is_correct is not None]
        bt = [float(m.backtracked) for m in ms]
        row = {"variant": v, "permutations": n}
        if acc:
            a, lo, hi = bootstrap_ci(acc, n_boot=1000)
            row["accuracy"] = f"{float(a):.0%} [{float(lo):.0%}, {float(hi):.0%}]"
        else:
            row["accuracy"] = "n/a (no correct option)"
        b, lo, hi = bootstrap_ci(bt, n_boot=1000)
        row["backtracking"] = f"{float(b):.0%} [{float(lo):.0%}, {float(hi):.0%}]"
        row["mean exploration length"] = f"{np.mean(ex):.1f}" if ex else "—"
        row["never converged"] = f"{n - len(ex)}/{n}"
        row["final entropy (mean)"] = f"{np.mean([m.entropy[-1] for m in ms]):.3f}"
        # destination shares of the final answer in the original order
        finals = [int(list(t.order)[t.metrics.final_answer]) if t.order else t.metrics.final_answer for t in trs]
        counts = np.bincount(finals, minlength=trs[0].n_options)
        row["final answers (original order)"] = ", ".join(f"{LETTERS[j]}:{c}" for j, c in enumerate(counts) if c)
        rows.append(row)
    return pd.DataFrame(rows)
