"""backend.learn (the Learn page's examples); named apart from tests/pages/test_learn.py (same basename).

Every explanation is read back: the steps, options and numbers it quotes are checked against the metrics of the
trace it explains (synthetic traces with known shapes, and the shipped model's curated examples)."""
import re

import numpy as np
import pytest

from backend import learn
from backend.errors import UsageError
from backend.settings import KL_THRESHOLD, KL_WINDOW, LETTERS, RUN_LENGTH
from tests.helpers_trace import backtracking_probs, make_trace, never_converging_probs, one_hot_path

OPT = r"([A-J]) \((.*?)\)"  # an option as quoted: "B (c2)"


def _pct(x) -> int:
    return int(f"{float(x):.0%}".rstrip("%"))


def _opt(tr, letter, text) -> int:
    i = LETTERS.index(letter)
    assert tr.options[i] == text, (letter, text, tr.options)
    return i


def _find(pattern, text):
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in {text!r}"
    return m.groups()


def check_exploration(tr, text):
    m = tr.metrics
    end = m.exploration_end if m.converged else m.n_steps
    last, names, changes = _find(r"In steps 1-(\d+) the model's top answer moves between (.*?) \((\d+) changes\)", text)
    assert int(last) == end
    shown = [_opt(tr, a, b) for a, b in re.findall(OPT, names)]
    seen = []
    for a in m.argmax[:end]:
        if int(a) not in seen:
            seen.append(int(a))
    assert shown == seen
    assert int(changes) == int((np.diff(m.argmax[:end]) != 0).sum())
    if m.converged:
        start, win, thr = _find(r"From step (\d+) on, the next (\d+) step-to-step changes .* KL (\d+(?:\.\d+)?)", text)
        assert int(start) == m.exploration_end and int(win) == m.params["kl_window"]
        assert float(thr) == m.params["kl_threshold"]
        assert all(k <= float(thr) for k in m.kl[m.exploration_end - 1:m.exploration_end - 1 + int(win)])
        a, b, p, k = _find(r"The final answer is " + OPT + r" \((\d+)% at step (\d+)\)", text)
        assert _opt(tr, a, b) == m.final_answer and int(k) == m.n_steps
        assert int(p) == _pct(tr.probs[-1, m.final_answer])


def check_commitment(tr, text):
    m = tr.metrics
    c = m.commitments[-1]
    (rl,) = _find(r"a run of at least (\d+) steps", text)
    assert int(rl) == m.params["run_length"]
    a, b, s, e, n = _find(r"holds " + OPT + r" from step (\d+) to step (\d+) \((\d+) steps\)", text)
    assert (_opt(tr, a, b), int(s), int(e), int(n)) == (c.option, c.start, c.end, c.length)
    p0, s0, p1, s1 = _find(r"goes from (\d+)% at step (\d+) to (\d+)% at step (\d+)", text)
    assert (int(s0), int(s1)) == (c.start, c.end)
    assert int(p0) == _pct(tr.probs[c.start - 1, c.option]) and int(p1) == _pct(tr.probs[c.end - 1, c.option])


def check_convergence(tr, text):
    m = tr.metrics
    start, win, thr = _find(r"from step (\d+) on, (\d+) steps in a row each change it by at most "
                            r"KL (\d+(?:\.\d+)?)", text)
    assert int(start) == m.exploration_end and int(win) == m.params["kl_window"]
    assert float(thr) == m.params["kl_threshold"]
    a, b, p, k, verdict = _find(r"confirming " + OPT + r": (\d+)% belief at step (\d+), (correct|not the correct one)",
                                text)
    assert _opt(tr, a, b) == m.final_answer and int(k) == m.n_steps
    assert int(p) == _pct(tr.probs[-1, m.final_answer])
    assert (verdict == "correct") == bool(m.is_correct)


def check_backtrack(tr, text):
    m = tr.metrics
    first, then = m.backtracks[0]
    a, b, s, e, n, rl, c, d, s2 = _find(r"commits to " + OPT + r" for steps (\d+)-(\d+) \((\d+) steps, at least "
                                        r"(\d+)\), then switches and commits to " + OPT + r" from step (\d+)", text)
    assert (_opt(tr, a, b), int(s), int(e), int(n)) == (first.option, first.start, first.end, first.length)
    assert int(rl) == m.params["run_length"]
    assert (_opt(tr, c, d), int(s2)) == (then.option, then.start)
    (arrow,) = _find(r"a backtrack, ([A-J] -> [A-J])", text)
    assert arrow == f"{LETTERS[first.option]} -> {LETTERS[then.option]}"
    f1, f2, p, k, verdict = _find(r"The final answer " + OPT + r" \((\d+)% at step (\d+)\) is "
                                  r"(correct|not the correct one|unscored)", text)
    assert _opt(tr, f1, f2) == m.final_answer and int(k) == m.n_steps
    assert int(p) == _pct(tr.probs[-1, m.final_answer])
    assert verdict == {True: "correct", False: "not the correct one", None: "unscored"}[m.is_correct]


def check_nca(tr, text):
    m = tr.metrics
    if m.converged:
        (e,) = _find(r"the belief converges at step (\d+)", text)
        assert int(e) == m.exploration_end
    else:
        assert "never converges" in text
    h, k, n, hu, a, b, p = _find(r"entropy is ([\d.]+) nats at step (\d+) \(uniform over (\d+) options is ([\d.]+)\); "
                                 r"the top option " + OPT + r" holds (\d+)%", text)
    assert float(h) == pytest.approx(float(m.entropy[-1]), abs=0.006) and int(k) == m.n_steps
    assert int(n) == tr.n_options and float(hu) == pytest.approx(np.log(tr.n_options), abs=0.006)
    top = int(np.asarray(tr.probs)[-1].argmax())
    assert _opt(tr, a, b) == top and int(p) == _pct(tr.probs[-1, top])


CHECKS = {"exploration": check_exploration, "commitment": check_commitment, "convergence": check_convergence,
          "backtrack": check_backtrack, "nca": check_nca}


def check_story(tr, t, headline, details):
    """A presenter's line for step t, against the metrics of the run (and of the run cut at t)."""
    m = tr.metrics
    K = m.n_steps
    assert headline.startswith(f"Step {t} of {K}: ")
    top = int(m.argmax[t - 1])
    a, p = _find(r"^([A-J]) holds (\d+)% of the belief", details)
    assert LETTERS.index(a) == top and int(p) == _pct(tr.probs[t - 1, top])
    if t > 1:
        (kl,) = _find(r"the belief moved by KL (below 0\.0001|[\d.e+-]+) since step " + str(t - 1), details)
        if kl.startswith("below"):
            assert m.kl[t - 2] < 1e-4
        else:
            assert kl == f"{m.kl[t - 2]:.3g}"
    changed = t > 1 and m.argmax[t - 1] != m.argmax[t - 2]
    assert ("the top answer changed from " in headline) == changed
    if changed:
        x, xt, y, yt = _find(r"the top answer changed from " + OPT + " to " + OPT, headline)
        assert (_opt(tr, x, xt), _opt(tr, y, yt)) == (m.argmax[t - 2], top)
    rl = m.params["run_length"]
    runs_now = [r for r in m.runs if r.start <= t]
    committed_now = runs_now[-1].start + rl - 1 == t
    assert ("a commitment" in headline) == committed_now
    bt_now = [(x, y) for x, y in m.backtracks if y.start + rl - 1 == t]
    assert ("backtrack:" in headline) == bool(bt_now)
    if bt_now:
        x, y = bt_now[0]
        assert f"the commitment to {LETTERS[x.option]} (steps {x.start}-{x.end}) is abandoned for " \
               f"{LETTERS[y.option]}" in headline
    win = m.params["kl_window"]
    ends_now = m.exploration_end is not None and m.exploration_end + win == t
    assert (f"exploration ended at step {m.exploration_end}:" in headline) == ends_now
    assert ("This is the last step" in details) == (t == K)


def exploring_probs():
    """A, C, B on top in the first steps, then B steadily: converges after exploring three answers."""
    return one_hot_path([0, 0, 2, 1, 2] + [1] * 25, strong=0.6)


def test_learn_select_and_explain():
    bt = make_trace(backtracking_probs(), correct=1)
    steady = make_trace(np.tile([0.1, 0.7, 0.1, 0.1], (30, 1)), correct=1, item_id="t-2")
    nca = make_trace(never_converging_probs(), correct=None, variant="nca", item_id="t-3")
    picks = learn.select_examples([bt, steady, nca])
    assert picks["backtrack"] == 0 and picks["nca"] == 2
    for kind, i in picks.items():
        text = learn.explain(kind, [bt, steady, nca][i])
        assert text.count(". ") >= 1 and len(text) < 600


@pytest.mark.parametrize("kind,probs,correct,variant", [
    ("backtrack", backtracking_probs(), 1, "base"),
    ("backtrack", one_hot_path([2] * 4 + [0] * 6 + [3] * 20), 0, "base"),  # two backtracks, ends wrong
    ("exploration", exploring_probs(), 1, "base"),
    ("exploration", never_converging_probs(), 1, "base"),
    ("commitment", one_hot_path([3, 0] + [2] * 28), 2, "base"),
    ("commitment", np.tile([0.1, 0.7, 0.1, 0.1], (30, 1)), 1, "base"),
    ("convergence", exploring_probs(), 1, "base"),
    ("convergence", exploring_probs(), 3, "base"),
    ("nca", never_converging_probs(), None, "nca"),
    ("nca", np.tile([0.25, 0.25, 0.25, 0.25], (30, 1)), None, "nca"),
])
def test_each_explanation_quotes_the_numbers_of_its_trace(kind, probs, correct, variant):
    tr = make_trace(probs, correct=correct, variant=variant, options=["c4", "c1", "c5", "c2"])
    text = learn.explain(kind, tr)
    CHECKS[kind](tr, text)


def test_explanations_follow_the_metrics_thresholds():
    tr = make_trace(exploring_probs(), correct=1).with_metrics(run_length=5, kl_threshold=0.05, kl_window=2)
    assert "at least 5 steps" in learn.explain("commitment", tr)
    text = learn.explain("convergence", tr)
    check_convergence(tr, text)
    assert "2 steps in a row" in text and "KL 0.05" in text
    assert (tr.metrics.params["run_length"], KL_WINDOW, KL_THRESHOLD, RUN_LENGTH) == (5, 3, 0.01, 3)


@pytest.mark.parametrize("probs", [backtracking_probs(), exploring_probs(), never_converging_probs(),
                                   one_hot_path([2] * 4 + [0] * 6 + [3] * 20)])
def test_step_story_tells_what_happens_at_each_step(probs):
    tr = make_trace(probs, correct=1, options=["c4", "c1", "c5", "c2"])
    for t in range(1, tr.steps + 1):
        headline, details = learn.step_story(tr, t)
        check_story(tr, t, headline, details)
    with pytest.raises(UsageError):
        learn.step_story(tr, 0)
    with pytest.raises(UsageError):
        learn.step_story(tr, tr.steps + 1)


def test_step_story_flags_steps_that_do_not_answer():
    tr = make_trace(backtracking_probs(), correct=1)
    tr.raw_mass[:2] = tr.probs[:2] * 0.001  # the first two steps put almost nothing on the option letters
    _, details = learn.step_story(tr, 1)
    assert "not answering" in details and "0.1%" in details
    assert "not answering" not in learn.step_story(tr, 3)[1]


def test_a_stale_curated_note_is_not_quoted():
    """The saved note names the abandoned answer by letter: quoted only when this trace abandons that option."""
    d = learn.load_curated("cups-letters")
    ex = next(e for e in d["examples"] if e.kind == "backtrack")
    tr = make_trace(backtracking_probs(), correct=1, options=["c1", "c3", "c5", "c4"], item_id=ex.item_id,
                    order=[0, 1, 2, 3])
    tr.model, tr.checkpoint_hash = "cups-letters", d["checkpoint_hash"]
    tr.permutation, tr.seed = ex.permutation, ex.seed
    text = learn.explain("backtrack", tr)
    assert f"{ex.holds} of {ex.of_seeds} initial-state seeds" in text
    assert (ex.note in text) == (f"{LETTERS[0]} (c1)" in ex.note)  # this trace abandons A (c1)
    tr.checkpoint_hash = "another"
    assert "initial-state seeds" not in learn.explain("backtrack", tr)


@pytest.fixture(scope="module")
def curated_traces():
    """The shipped default model's curated examples, traced as the Learn page traces them."""
    from backend.items import load_benchmark
    from backend.models import load_bundle
    from backend.settings import BENCHMARKS_DIR
    from backend.trace import TraceRequest

    d = learn.load_curated("cups-letters")
    bundle = load_bundle("cups-letters")
    bench = load_benchmark(BENCHMARKS_DIR / d["benchmark"])
    by_id = {it.id: it for it in bench.items}
    s = learn.page_settings("cups-letters")
    exs = d["examples"]
    trs = TraceRequest([by_id[e.item_id].instance(e.variant, e.permutation) for e in exs], s.steps,
                       [e.seed for e in exs], s.init_scale).run(bundle)
    return [(e.kind, tr, by_id[e.item_id]) for e, tr in zip(exs, trs)]


def test_the_shipped_examples_are_explained_with_their_own_numbers(curated_traces):
    assert {k for k, _, _ in curated_traces} == set(learn.KINDS)
    for kind, tr, item in curated_traces:
        assert learn.holds(kind, tr.metrics), kind  # the curated example still shows what it is chosen for
        text = learn.explain(kind, tr, item)
        CHECKS[kind](tr, text)
        if kind == "backtrack":  # the abandoned answer is described from the item's own annotations
            a = tr.metrics.backtracks[0][0].option
            assert f"The abandoned answer {LETTERS[a]} ({tr.options[a]}) is " in text
        for t in range(1, tr.steps + 1):
            check_story(tr, t, *learn.step_story(tr, t))


def test_page_settings_name_what_learn_runs():
    s = learn.page_settings("cups-letters")
    d = learn.load_curated("cups-letters")
    assert s.curated and s.steps == d["steps"] and set(s.seeds) == {e.seed for e in d["examples"]}
    assert f"{s.steps} steps" in s.note() and "Explore, Compare and Models" in s.note()
    other = learn.page_settings("no-such-model")
    assert not other.curated and other.seeds == (learn.SCAN_SEED,)


def test_find_examples_picks_a_backtrack_among_base_instances(monkeypatch):
    """The most robust backtracking instance may be a no-correct-answer one: the backtrack example is still
    picked, among the base instances (where the page shows backtracks)."""
    from backend.items import load_benchmark
    from backend.settings import BENCHMARKS_DIR

    items = load_benchmark(BENCHMARKS_DIR / "cups-letters-test.jsonl").items[:2]
    wanted = (items[1].id, "base", 0)

    def fake_trace_items(bundle, insts, steps, seeds=None):
        out = []
        for it in insts:
            key = (it.id, it.variant or "base", it.permutation)
            bt = it.variant == "nca" or (key == wanted and seeds in (0, 2))
            probs = backtracking_probs() if bt else np.tile([0.1, 0.7, 0.1, 0.1], (30, 1))
            out.append(make_trace(probs, correct=None if it.variant == "nca" else 1, item_id=it.id,
                                  variant=it.variant, seed=seeds))
            out[-1].permutation = it.permutation
        return out

    monkeypatch.setattr(learn, "trace_items", fake_trace_items)
    ex = {e.kind: e for e in learn.find_examples(None, items, 30, [0, 1, 2], n_items=2, permutations=1)}
    assert (ex["backtrack"].item_id, ex["backtrack"].variant, ex["backtrack"].permutation) == wanted
    assert (ex["backtrack"].holds, ex["backtrack"].of_seeds) == (2, 3)


@pytest.mark.parametrize("name", ["cups-letters", "cups-mini"])
def test_the_saved_robustness_of_the_shipped_examples_is_true(name):
    """'This holds under k of n seeds' is quoted on the page: re-trace each example under its n seeds (one run
    each, as Explore traces it) and count."""
    from backend.items import load_benchmark
    from backend.models import load_bundle
    from backend.settings import BENCHMARKS_DIR
    from backend.trace import trace_items

    d = learn.load_curated(name)
    bundle = load_bundle(name)
    assert d["checkpoint_hash"] == bundle.checkpoint_hash, "the examples were chosen on another checkpoint"
    by_id = {it.id: it for it in load_benchmark(BENCHMARKS_DIR / d["benchmark"]).items}
    for e in d["examples"]:
        inst = by_id[e.item_id].instance(e.variant, e.permutation)
        runs = [trace_items(bundle, [inst], d["steps"], seeds=s)[0] for s in range(e.of_seeds)]
        assert sum(learn.holds(e.kind, r.metrics) for r in runs) == e.holds, (e.kind, e.item_id)
        assert learn.holds(e.kind, runs[e.seed].metrics), (e.kind, "the shown seed must show it")
