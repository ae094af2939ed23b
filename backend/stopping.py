"""Exit criteria: where each stopping rule would stop a run, and the answer it would give there.  Pure numpy.

Every rule is *online*: it stops at the first step t at which its condition can be checked from steps 1..t
and holds; the answer is ``argmax p_t`` (ties: the lowest option).  A rule whose condition never holds uses
the last step (``fired`` is False, and the table reports the share of such runs as ``never_stopped``).

=================  ======================================================================================
rule (setting)     stops at the first step t with
=================  ======================================================================================
``kl`` (thr)       KL(p_t || p_(t-1)) < thr, t >= 2.  Huginn's adaptive exit uses 5e-4 / 1e-3 on its full
                   next-token distribution; here p is the belief over the options (what a trace records).
``entropy`` (thr)  |H_t - H_(t-1)| < thr, t >= 2
``argmax`` (N)     the same argmax at steps t-N+1 .. t (N consecutive steps; N = 3 is the paper's window)
``latent`` (thr)   ||s_t - s_(t-1)|| / ||s_t|| < thr at the last position, t >= 2 (needs the states)
``exit_gate`` (q)  the cumulative exit probability sum_(i<=t) P(exit at i) >= q (families with an exit gate,
                   e.g. Ouro; needs the per-step exit probabilities)
``exploration``    the paper's exploration end e (backend.metrics: kl_e .. kl_(e+w-1) <= thr) is decidable at
 (thr, w)          step e + w (kl_(e+w-1) compares p_(e+w) with p_(e+w-1)), so the rule stops there
``last``           t = K
``oracle``         the first step from which the argmax never changes again (the bound: the fewest steps that
                   give the final answer; not an online rule)
=================  ======================================================================================
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .dynamics import step_size
from .errors import UsageError
from .metrics import entropy, exploration_end, step_kl
from .settings import (KL_THRESHOLD, KL_WINDOW, STOP_ARGMAX_RUNS, STOP_ENTROPY_THRESHOLDS, STOP_EXIT_QUANTILES,
                       STOP_KL_THRESHOLDS, STOP_LATENT_THRESHOLDS)
from .stats import CI, bootstrap_weights, percentile_interval

RULE_NAMES = ("kl", "entropy", "argmax", "latent", "exit_gate", "exploration", "last", "oracle")


@dataclass(frozen=True)
class Rule:
    name: str
    setting: Optional[Tuple[float, ...]] = None

    def __post_init__(self):
        if self.name not in RULE_NAMES:
            raise UsageError(f"unknown stopping rule {self.name!r}: use one of {', '.join(RULE_NAMES)}")
        s = self.setting
        if s is not None and not isinstance(s, tuple):
            s = (s,)
            object.__setattr__(self, "setting", s)
        need = {"kl": 1, "entropy": 1, "argmax": 1, "latent": 1, "exit_gate": 1, "exploration": 2, "last": 0,
                "oracle": 0}[self.name]
        if len(s or ()) != need:
            raise UsageError(f"rule {self.name} takes {need} setting(s), got {s!r}")
        for v in s or ():
            if not np.isfinite(v) or v <= 0:
                raise UsageError(f"rule {self.name}: settings must be positive numbers, got {s!r}")
        if self.name == "argmax" and (int(s[0]) != s[0] or s[0] < 1):
            raise UsageError(f"rule argmax needs a whole number of steps >= 1, got {s[0]}")
        if self.name == "exit_gate" and s[0] > 1:
            raise UsageError(f"rule exit_gate needs a quantile q in (0, 1], got {s[0]}")
        if self.name == "exploration" and int(s[1]) != s[1]:
            raise UsageError(f"rule exploration needs a whole-number window, got {s[1]}")

    @property
    def needs(self) -> Optional[str]:
        return {"latent": "states", "exit_gate": "exit_probs"}.get(self.name)

    def setting_label(self) -> str:
        s = self.setting
        if self.name in ("kl", "entropy", "latent"):
            return f"< {s[0]:g}"
        if self.name == "argmax":
            return f"{int(s[0])} steps"
        if self.name == "exit_gate":
            return f"q = {s[0]:g}"
        if self.name == "exploration":
            return f"kl <= {s[0]:g} x {int(s[1])}"
        return ""

    @property
    def label(self) -> str:
        sl = self.setting_label()
        return f"{self.name} {sl}".strip()


def default_rules() -> List[Rule]:
    """Every rule at its default settings (settings.py), the oracle last."""
    rules = [Rule("kl", t) for t in STOP_KL_THRESHOLDS]
    rules += [Rule("entropy", t) for t in STOP_ENTROPY_THRESHOLDS]
    rules += [Rule("argmax", float(n)) for n in STOP_ARGMAX_RUNS]
    rules += [Rule("latent", t) for t in STOP_LATENT_THRESHOLDS]
    rules += [Rule("exit_gate", q) for q in STOP_EXIT_QUANTILES]
    rules += [Rule("exploration", (KL_THRESHOLD, float(KL_WINDOW))), Rule("last"), Rule("oracle")]
    return rules


@dataclass(frozen=True)
class Stop:
    """Where one rule stops one run: ``step`` (1-based), the ``answer`` there, and whether the rule ``fired``
    (False: its condition never held and the last step is used)."""

    rule: str
    setting: str
    step: int
    answer: int
    fired: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _beliefs(probs) -> np.ndarray:
    """[K, n] float64 beliefs, validated as the metrics validate them (a bad array is a one-line UsageError)."""
    entropy(probs)
    return np.asarray(probs, dtype=np.float64)


def _first(cond: np.ndarray, offset: int) -> Optional[int]:
    """1-based step of the first True in ``cond`` whose element i stands for step i + offset."""
    idx = np.flatnonzero(cond)
    return int(idx[0]) + offset if idx.size else None


def stop_step(rule: Rule, probs, states=None, exit_probs=None) -> Optional[Tuple[Optional[int], int]]:
    """(the step the rule fires at, or None: never; K) for one run, or None when the rule cannot apply
    (``latent`` without states, ``exit_gate`` without exit probabilities)."""
    p = _beliefs(probs)
    K = p.shape[0]
    name, s = rule.name, rule.setting
    if name == "kl":
        return _first(step_kl(p) < s[0], 2), K
    if name == "entropy":
        return _first(np.abs(np.diff(entropy(p))) < s[0], 2), K
    if name == "argmax":
        n = int(s[0])
        am = p.argmax(1)
        for t in range(n, K + 1):
            if (am[t - n:t] == am[t - 1]).all():
                return t, K
        return None, K
    if name == "latent":
        if states is None:
            return None
        h = np.asarray(states, dtype=np.float64)
        if h.shape[0] != K:
            raise UsageError(f"states have {h.shape[0]} steps, the beliefs {K}")
        return _first(step_size(h)[1:] < s[0], 2), K
    if name == "exit_gate":
        if exit_probs is None:
            return None
        e = np.asarray(exit_probs, dtype=np.float64)
        if e.shape != (K,) or not np.isfinite(e).all() or (e < 0).any():
            raise UsageError(f"exit probabilities must be {K} finite numbers >= 0, got shape {e.shape}")
        return _first(np.cumsum(e) >= s[0] - 1e-12, 1), K
    if name == "exploration":
        e = exploration_end(step_kl(p), s[0], int(s[1]))
        return (None if e is None else e + int(s[1])), K
    if name == "last":
        return K, K
    if name == "oracle":
        am = p.argmax(1)
        differ = np.flatnonzero(am != am[-1])
        return (int(differ[-1]) + 2 if differ.size else 1), K
    raise UsageError(f"unknown rule {name}")


def stops(probs, states=None, exit_probs=None, rules: Optional[Sequence[Rule]] = None) -> List[Stop]:
    """Every applicable rule's stop on one run (rules that need missing inputs are left out)."""
    p = _beliefs(probs)
    am = p.argmax(1)
    out = []
    for r in rules if rules is not None else default_rules():
        res = stop_step(r, p, states, exit_probs)
        if res is None:
            continue
        t, K = res
        fired = t is not None
        t = t if fired else K
        out.append(Stop(r.name, r.setting_label(), int(t), int(am[t - 1]), fired))
    return out


# ---------------------------------------------------------------------------------------------- on a set
def record_of(trace) -> dict:
    """The inputs of the rules for a :class:`backend.trace.Trace` (or anything with the same attributes)."""
    states = getattr(trace, "hidden_last", None)
    if states is not None and np.asarray(states).ndim == 2 and np.asarray(states).shape[1] == 0:
        states = None
    return {"probs": trace.probs, "correct": trace.correct, "variant": getattr(trace, "variant", None),
            "states": states, "exit_probs": getattr(trace, "exit_probs", None)}


def exit_rule_table(records: Iterable[Mapping], rules: Optional[Sequence[Rule]] = None,
                    by: str = "variant", n_boot: int = 0, seed: int = 0, ci: float = CI) -> List[dict]:
    """One row per (group, rule, setting): ``n``, ``mean_steps``, ``accuracy``, ``never_stopped`` (share of
    runs where the rule never fired and the last step was used), ``agrees_with_final`` (share whose answer at
    the stop is the final answer), ``steps`` (K when all runs have the same length).

    ``records``: mappings with ``probs`` [K, n], ``correct`` (index or None), the grouping key (``variant``),
    optional ``states`` [K, E] and ``exit_probs`` [K].  Accuracy is over runs with a correct option (None when
    there are none, e.g. the NCA variant).  The last-step rule's accuracy is the final accuracy; the oracle
    has the same accuracy with the fewest steps that give it.

    ``n_boot`` > 0 adds percentile bootstrap intervals (level ``ci``) of ``mean_steps`` and ``accuracy``
    (``*_low`` / ``*_high``) resampling items (the records' ``item_id``; each record its own cluster when it has
    none), the report's scheme, plus ``n_items``.
    """
    rules = list(rules) if rules is not None else default_rules()
    acc: Dict[Tuple[object, str, str], Dict[str, list]] = {}
    order: List[Tuple[object, str, str]] = []
    n_rec = 0
    for rec in records:
        p = _beliefs(rec["probs"])
        K = p.shape[0]
        final = int(p.argmax(1)[-1])
        correct = rec.get("correct")
        for st in stops(p, rec.get("states"), rec.get("exit_probs"), rules):
            key = (rec.get(by), st.rule, st.setting)
            if key not in acc:
                acc[key] = {"steps": [], "correct": [], "fired": [], "agree": [], "K": [], "item": [], "citem": []}
                order.append(key)
            a = acc[key]
            item = rec.get("item_id")
            a["item"].append(item if item is not None else f"#{n_rec}")
            a["steps"].append(st.step)
            a["fired"].append(st.fired)
            a["agree"].append(st.answer == final)
            a["K"].append(K)
            if correct is not None:
                a["correct"].append(st.answer == int(correct))
                a["citem"].append(a["item"][-1])
        n_rec += 1
    rows = []
    rule_rank = {r.label: i for i, r in enumerate(rules)}
    for key in sorted(order, key=lambda k: (str(k[0]), rule_rank.get(f"{k[1]} {k[2]}".strip(), 99))):
        a = acc[key]
        Ks = set(a["K"])
        rows.append({
            by: key[0], "rule": key[1], "setting": key[2], "n": len(a["steps"]),
            "mean_steps": float(np.mean(a["steps"])),
            "accuracy": float(np.mean(a["correct"])) if a["correct"] else None,
            "never_stopped": float(1 - np.mean(a["fired"])),
            "agrees_with_final": float(np.mean(a["agree"])),
            "steps": Ks.pop() if len(Ks) == 1 else None,
        })
        if n_boot > 0:
            rows[-1].update(_intervals(a, n_boot, seed, ci))
    return rows


def _cluster_mean(values: Sequence[float], clusters: Sequence[object], n_boot: int, seed: int, ci: float):
    """(low, high) of the mean of ``values`` under a bootstrap over ``clusters`` (None, None when empty)."""
    if not len(values):
        return None, None
    codes: Dict[object, int] = {}
    idx = np.array([codes.setdefault(c, len(codes)) for c in clusters])
    num = np.bincount(idx, weights=np.asarray(values, dtype=np.float64), minlength=len(codes))
    den = np.bincount(idx, minlength=len(codes)).astype(np.float64)
    W = bootstrap_weights(len(codes), n_boot, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo, hi = percentile_interval((W @ num) / (W @ den), ci)
    return float(lo), float(hi)


def _intervals(a: Mapping[str, list], n_boot: int, seed: int, ci: float) -> dict:
    slo, shi = _cluster_mean(a["steps"], a["item"], n_boot, seed, ci)
    alo, ahi = _cluster_mean([float(x) for x in a["correct"]], a["citem"], n_boot, seed, ci)
    return {"mean_steps_low": slo, "mean_steps_high": shi, "accuracy_low": alo, "accuracy_high": ahi,
            "n_items": len(set(a["item"])), "ci": ci, "n_boot": n_boot}


def records_from_results(df, hidden: Optional[np.ndarray] = None) -> List[dict]:
    """Exit-rule inputs from a sweep's rows (``belief``, ``correct``, ``variant``; ``exit_probs`` if stored);
    ``hidden``: float16 [rows, steps, E] last-position states in row order (the sweep's ``_hidden`` parts)."""
    need = [c for c in ("belief", "variant", "correct") if c not in df.columns]
    if need:
        raise UsageError(f"the results lack column(s) {', '.join(need)}: not a LoopLens sweep")
    if hidden is not None and len(hidden) != len(df):
        raise UsageError(f"{len(hidden)} hidden-state rows for {len(df)} result rows")
    out = []
    has_exit = "exit_prob" in df.columns
    has_item = "item_id" in df.columns
    for i, row in enumerate(df.itertuples(index=False)):
        ex = getattr(row, "exit_prob") if has_exit else None
        out.append({
            "probs": np.stack([np.asarray(r, dtype=np.float64) for r in row.belief]),
            "correct": _opt_int(row.correct), "variant": row.variant,
            "item_id": row.item_id if has_item else None,
            "states": None if hidden is None else hidden[i],
            # null in rows of families without an exit gate (and in parts written before the column existed)
            "exit_probs": None if ex is None or (np.ndim(ex) == 0 and not np.isfinite(float(ex)))
            else np.asarray(ex, dtype=np.float64),
        })
    return out


def _opt_int(x) -> Optional[int]:
    """An optional index from a results cell (None, NaN and pandas' NA are missing)."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(f) else int(f)


def exit_rule_table_for_results(df, hidden: Optional[np.ndarray] = None,
                                rules: Optional[Sequence[Rule]] = None, n_boot: int = 0) -> List[dict]:
    """The exit-rule table of a results set (see :func:`backend.stopping.exit_rule_table`)."""
    return exit_rule_table(records_from_results(df, hidden), rules, n_boot=n_boot)
