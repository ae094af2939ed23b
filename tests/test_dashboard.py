import json

import numpy as np
import pytest

from backend import dashboard as dash
from backend import learn
from backend.errors import LoopLensError, UsageError
from tests.helpers_trace import backtracking_probs, make_trace, never_converging_probs


def test_parse_query_valid_and_invalid_values():
    st, problems = dash.parse_query({"model": "m", "item": "fact-001", "variant": "easy", "steps": "12",
                                     "seed": "3", "perm": "2", "init": "0.5", "bench": "general-qa.jsonl"})
    assert (st.model, st.item, st.variant, st.steps, st.seed, st.perm, st.init, st.bench) == \
        ("m", "fact-001", "easy", 12, 3, 2, 0.5, "general-qa.jsonl")
    assert problems == []
    st, problems = dash.parse_query({"variant": "hard", "steps": "0", "seed": "x", "init": "nan",
                                     "bench": "../../etc/passwd"})
    assert (st.variant, st.steps, st.seed, st.init, st.bench) == ("base", 30, 0, 1.0, None)
    assert len(problems) == 5


def test_query_roundtrip():
    v = dash.ViewState(model="m", bench="b.jsonl", item="i", variant="nca", perm=4, steps=20, seed=7, init=0.0)
    back, problems = dash.parse_query(v.to_query())
    assert back == v and not problems


def test_parse_upload_lists_bad_lines_and_keeps_good_ones():
    good = json.dumps({"id": "a", "question": "Q?", "answer": "x", "distractors": ["y", "z"]})
    data = "\n".join([good, "{not json", json.dumps({"id": "b"})]).encode()
    bench = dash.parse_upload(data, "u.jsonl")
    assert [it.id for it in bench.items] == ["a"]
    assert [e.line for e in bench.errors] == [2, 3]


def test_parse_upload_rejects_big_binary_and_empty():
    with pytest.raises(UsageError, match="limited"):
        dash.parse_upload(b"x" * (dash.MAX_UPLOAD_BYTES + 1))
    with pytest.raises(UsageError, match="UTF-8"):
        dash.parse_upload(b"\xff\xfe\x00bad")
    with pytest.raises(UsageError, match="empty"):
        dash.parse_upload(b"\n\n")


def test_custom_item_and_options_text():
    it = dash.custom_item("Q?", "A) one\nB) two\n\nthree", "B")
    assert it.options == ("one", "two", "three") and it.correct == 1
    assert dash.custom_item("Q?", "one\ntwo", "none").correct is None
    with pytest.raises(UsageError, match="2 to 10"):
        dash.custom_item("Q?", "only one", None)
    with pytest.raises(UsageError):
        dash.custom_item("   ", "a\nb", None)
    with pytest.raises(UsageError, match="same"):
        dash.custom_item("Q?", "a\nA", None)


def test_parse_seeds():
    assert dash.parse_seeds("0, 1, 5") == [0, 1, 5]
    assert dash.parse_seeds("2-4") == [2, 3, 4]
    assert dash.parse_seeds("") == [0]
    with pytest.raises(UsageError):
        dash.parse_seeds("x")


def test_filter_items():
    from backend.items import BenchmarkItem

    items = [dash.EXAMPLE_ITEM,
             BenchmarkItem(id="l-1", question="Who is tallest?", answer="Ana", distractors=["Ben", "Cy"],
                           domain="logic")]
    assert [i.id for i in dash.filter_items(items, ["logic"])] == ["l-1"]
    assert [i.id for i in dash.filter_items(items, variant="nca")] == ["example-001"]
    assert [i.id for i in dash.filter_items(items, search="canberra")] == ["example-001"]


def test_run_key_and_store():
    from backend.items import Item

    it = Item("Q?", ("a", "b"), 0)
    k1 = dash.run_key("p", "h", [it], 30, [0], 1.0, None)
    assert k1 == dash.run_key("p", "h", [it], 30, [0], 1.0, None)
    assert k1 != dash.run_key("p", "h", [it], 30, [1], 1.0, None)
    assert k1 != dash.run_key("p", "h", [it.permuted(1)], 30, [0], 1.0, None)
    s = dash.TraceStore(maxsize=2)
    s.put("a", 1), s.put("b", 2), s.get("a"), s.put("c", 3)
    assert s.get("b") is None and s.get("a") == 1 and len(s) == 2


def test_exports_carry_every_parameter_and_seed():
    trs = [make_trace(backtracking_probs(), seed=s) for s in (3, 4)]
    csv = dash.traces_csv(trs, {"n_seeds": 2})
    import io

    import pandas as pd
    df = pd.read_csv(io.StringIO(csv))
    assert set(df["seed"]) == {3, 4} and len(df) == 2 * 30 * 4
    for col in ("model", "checkpoint_hash", "steps", "init_scale", "template", "variant", "permutation", "belief",
                "raw_mass", "n_seeds"):
        assert col in df.columns
    d = json.loads(dash.traces_json(trs, {"n_seeds": 2}))
    assert [t["seed"] for t in d["traces"]] == [3, 4] and d["parameters"]["n_seeds"] == 2
    from backend.trace import Trace
    back = Trace.from_dict(d["traces"][0])
    np.testing.assert_allclose(back.probs, trs[0].probs)


def test_png_export_message_without_chromium(monkeypatch):
    monkeypatch.setattr(dash, "chromium_path", lambda: None)
    with pytest.raises(LoopLensError, match="Chromium"):
        dash.figure_png(object())


def test_metric_summary_and_seed_robustness():
    tr = make_trace(backtracking_probs(), correct=1)
    s = dash.metric_summary(tr, {0: 1})
    assert s["Backtracks"].startswith("A -> B") and "similarity rank 1" in s["Abandoned answers"]
    assert s["Correct?"] == "yes"
    never = make_trace(never_converging_probs(), correct=None)
    s = dash.metric_summary(never)
    assert s["Exploration length"] == "never converged" and s["Correct?"] == "no correct option"
    steady = np.tile([0.1, 0.7, 0.1, 0.1], (30, 1))
    df, sentence = dash.seed_robustness([tr, make_trace(steady, seed=1, correct=1)])
    assert "only 1 of 2 seeds" in sentence and len(df) == 2


def test_variant_bands_undo_permutation():
    p = np.tile([0.7, 0.1, 0.1, 0.1], (30, 1))
    a = make_trace(p, correct=0, options=list("wxyz"), order=[0, 1, 2, 3])
    b = make_trace(p[:, [1, 0, 2, 3]], correct=1, options=list("xwyz"), order=[1, 0, 2, 3])
    bands = dash.variant_bands({"base": [a, b]}, n_boot=50)
    np.testing.assert_allclose(bands["base"]["mean"][0], [0.7, 0.1, 0.1, 0.1])
    assert bands["base"]["options"] == list("wxyz") and bands["base"]["correct"] == 0
    table = dash.variant_table({"base": [a, b]})
    assert table.loc[0, "accuracy"].startswith("100%")


def test_friendly_errors():
    assert "Out of memory" in dash.friendly_error(MemoryError())
    assert "Out of memory" in dash.friendly_error(RuntimeError("CUDA out of memory. Tried"))
    assert dash.friendly_error(UsageError("bad")) == "bad"


def test_learn_select_and_explain():
    bt = make_trace(backtracking_probs(), correct=1)
    steady = make_trace(np.tile([0.1, 0.7, 0.1, 0.1], (30, 1)), correct=1, item_id="t-2")
    nca = make_trace(never_converging_probs(), correct=None, variant="nca", item_id="t-3")
    picks = learn.select_examples([bt, steady, nca])
    assert picks["backtrack"] == 0 and picks["nca"] == 2
    for kind, i in picks.items():
        text = learn.explain(kind, [bt, steady, nca][i])
        assert text.count(". ") >= 1 and len(text) < 600
