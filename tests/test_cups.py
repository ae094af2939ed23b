"""The cups state-tracking task, its training script, and the shipped cups-mini model."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from backend import cups
from backend.cli import main as cli_main
from backend.items import BenchmarkItem, load_benchmark
from backend.models import load_bundle, load_model

NAME = "cups-mini"
REPO = Path(__file__).resolve().parents[1]
MODEL_DIR = REPO / "data" / "models" / NAME
BENCH = REPO / "data" / "benchmarks" / f"{NAME}-test.jsonl"
shipped = pytest.mark.skipif(not (MODEL_DIR / "config.json").is_file(), reason=f"{NAME} is not shipped")


def simulate(question: str) -> str:
    words = question.split()
    pos = cups.CUPS.index(words[1])
    for w in words[3:-1]:
        pos = cups.apply_swap(pos, w)
    return cups.CUPS[pos]


def test_generator_is_deterministic_and_correct():
    a, b = cups.make_split("test", 30), cups.make_split("test", 30)
    assert a == b
    for d in a:
        assert simulate(d["question"]) == d["answer"] == d["path"][-1]
        assert d["path"][-2] != d["answer"]  # the last swap always moves the ball: one swap short is wrong


def test_splits_are_disjoint():
    sets = {s: {d["question"] for d in cups.make_split(s, 140)} for s in ("test", "validation")}
    assert not sets["test"] & sets["validation"]
    rng = random.Random(0)
    for _ in range(200):
        start, swaps, _ = cups.draw(rng, rng.randint(2, 8))
        if cups.split_of(start, swaps) == "train":
            assert cups.question_text(start, swaps) not in sets["test"]


def test_variants_have_the_paper_design():
    for d in cups.make_split("test", 70):
        it = BenchmarkItem.from_dict(d)
        base, easy, nca = it.variant("base"), it.variant("easy"), it.variant("nca")
        assert base.correct == 0 and nca.correct is None
        assert set(base.options) <= set(cups.CUPS) and set(nca.options) <= set(cups.CUPS)
        assert d["answer"] not in nca.options
        assert not set(easy.options[1:]) & set(cups.CUPS) and not set(easy.options[1:]) & set(d["question"].split())
        # plausible distractors are where the ball was after fewer swaps, most recent first
        earlier = [c for c in reversed(d["path"][:-1]) if c != d["answer"]]
        seen = list(dict.fromkeys(earlier))
        assert list(d["distractors"][:len(seen[:3])]) == seen[:3]


def test_training_smoke(tmp_path):
    assert cli_main(["train", "cups-mini", "--out", str(tmp_path), "--max-steps", "3", "--eval-every", "3",
                     "--d", "32", "--quiet"]) == 0
    model = load_model(tmp_path)
    assert model.config.n_embd == 32 and model.config.n_layers_in_recurrent_block == 1
    bundle = load_bundle(tmp_path)
    assert bundle.template.readout == "option" and (tmp_path / "training_log.json").is_file()


@shipped
def test_shipped_files_and_benchmark():
    for f in ("config.json", "model.safetensors", "tokenizer.json", "prompt_template.json", "README.md"):
        assert (MODEL_DIR / f).is_file(), f
    assert sum(p.stat().st_size for p in MODEL_DIR.iterdir()) <= 20 * 2**20
    bench = load_benchmark(BENCH)
    assert not bench.errors and len(bench) >= 50
    assert all(it.available_variants() == ["base", "easy", "nca"] for it in bench.items)


@shipped
def test_heldout_accuracy_at_30_steps_and_depth_matters():
    """Acceptance: >= 80% on 50 held-out base items after 30 steps, traced with the project's own tracer."""
    from backend.trace import trace_items

    torch.set_num_threads(min(2, torch.get_num_threads()))
    bundle = load_bundle(NAME)
    bench = load_benchmark(BENCH).items
    step = max(1, len(bench) // 50)
    items = [b.instance("base", k % 24) for k, b in enumerate(bench[::step][:50])]
    traces = trace_items(bundle, items, 30, seeds=0)
    final = np.array([t.metrics.final_answer == t.correct for t in traces])
    early = np.array([int(t.probs[1].argmax()) == t.correct for t in traces])
    assert final.mean() >= 0.80, final.mean()
    assert early.mean() < final.mean()  # more steps help: depth matters
