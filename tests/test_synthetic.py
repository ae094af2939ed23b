"""The synthetic multi-hop generator behind the default model (backend/synthetic.py)."""
import random

import pytest

from backend import synthetic as syn
from backend.items import BenchmarkItem


def follow(question: str, start: str, hops: int) -> str:
    facts = question.split("facts :")[1].split(" . steps")[0].split(" ; ")
    succ = dict(tuple(x.strip() for x in f.split(" > ")) for f in facts)
    x = start
    for _ in range(hops):
        x = succ[x]
    return x


def test_deterministic():
    a = syn.generate("test", 30, seed=3)
    b = syn.generate("test", 30, seed=3)
    assert a == b
    assert a != syn.generate("test", 30, seed=4)
    r1, r2 = random.Random(7), random.Random(7)
    assert syn.make_item(r1, 4) == syn.make_item(r2, 4)


def test_splits_disjoint():
    sets = {s: syn.generate(s, 200, seed=0) for s in syn.SPLITS}
    hashes = {s: {it["fact_hash"] for it in items} for s, items in sets.items()}
    questions = {s: {it["question"] for it in items} for s, items in sets.items()}
    for s1 in syn.SPLITS:
        assert all(it["split"] == s1 for it in sets[s1])
        assert all(syn.split_of(it["question"].split("facts :")[1].split(" . steps")[0].strip().split(" ; "))
                   == s1 for it in sets[s1])
        for s2 in syn.SPLITS:
            if s1 < s2:
                assert not hashes[s1] & hashes[s2]
                assert not questions[s1] & questions[s2]


@pytest.mark.parametrize("seed", [0, 1])
def test_variants(seed):
    for d in syn.generate("test", 70, seed=seed):
        item = BenchmarkItem.from_dict(d)  # the project's schema validates
        q, k, path = d["question"], d["hops"], d["path"]
        start = q.split("start : ")[1].strip()
        assert start == path[0]
        assert follow(q, start, k) == d["answer"] == path[k]
        prompt_entities = {w for w in q.replace(";", " ").replace(">", " ").split() if w in syn.POOL}
        assert len(prompt_entities) == d["n_entities"]
        # every entity appears exactly once on each side of a fact: no local shortcut
        facts = q.split("facts :")[1].split(" . steps")[0].split(" ; ")
        lefts = [f.split(" > ")[0].strip() for f in facts]
        rights = [f.split(" > ")[1].strip() for f in facts]
        assert sorted(lefts) == sorted(rights) == sorted(prompt_entities)
        # base: distractors are chain entities met along (or just past) the path, never the answer
        assert len(d["distractors"]) == 3 and d["answer"] not in d["distractors"]
        assert all(x in path and x in prompt_entities for x in d["distractors"])
        assert d["distractors"][0] == path[k - 1]  # the one-step-shallower answer comes first
        # easy: absent from the prompt
        assert all(x not in prompt_entities and x in syn.POOL for x in d["easy_distractors"])
        # nca: another chain entity, so no option is correct
        nca = item.variant("nca")
        assert nca.correct is None
        assert d["answer"] not in nca.options
        assert d["nca_distractor"] in path and d["nca_distractor"] in prompt_entities
        assert item.variant("base").correct == 0 and item.variant("easy").correct == 0


def test_hops_vary_and_tokens_single():
    items = syn.generate("validation", 70, seed=0)
    assert {it["hops"] for it in items} == set(range(2, 7))
    tok = syn.build_tokenizer()
    for w in syn.POOL:
        assert len(tok.encode(" " + w).ids) == 1 and len(tok.encode(w).ids) == 1
    assert tok.token_to_id("<unk>") not in tok.encode(items[0]["question"]).ids
