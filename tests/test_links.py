from backend.links import ViewState, parse_query


def test_parse_query_valid_and_invalid_values():
    st, problems = parse_query({"model": "m", "item": "fact-001", "variant": "easy", "steps": "12",
                                "seed": "3", "perm": "2", "init": "0.5", "bench": "general-qa.jsonl"})
    assert (st.model, st.item, st.variant, st.steps, st.seed, st.perm, st.init, st.bench) == \
        ("m", "fact-001", "easy", 12, 3, 2, 0.5, "general-qa.jsonl")
    assert problems == []
    st, problems = parse_query({"variant": "hard", "steps": "0", "seed": "x", "init": "nan",
                                "bench": "../../etc/passwd"})
    assert (st.variant, st.steps, st.seed, st.init, st.bench) == ("base", 30, 0, 1.0, None)
    assert len(problems) == 5


def test_query_roundtrip():
    v = ViewState(model="m", bench="b.jsonl", item="i", variant="nca", perm=4, steps=20, seed=7, init=0.0)
    back, problems = parse_query(v.to_query())
    assert back == v and not problems
