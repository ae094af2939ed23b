"""The shipped general-qa benchmark runs end to end through a Huginn-format model (chat template, letter readout)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.items import load_benchmark
from backend.models import HUGINN_CHAT
from backend.trace import trace_items

BENCH = Path(__file__).parents[1] / "data" / "benchmarks" / "general-qa.jsonl"


def test_sample_of_general_qa_traces_through_huginn_chat_letter_pipeline(tiny_bundle):
    bench = load_benchmark(BENCH)
    assert not bench.errors and len(bench) == 260
    assert tiny_bundle.template == HUGINN_CHAT  # Huginn special tokens present -> Huginn chat template
    by_domain = {}
    for it in bench.items:
        by_domain.setdefault(it.domain, it)
    items = [it.instance(v, p) for it in by_domain.values() for v, p in (("base", 0), ("easy", 3), ("nca", 7))]
    traces = trace_items(tiny_bundle, items, 4, seeds=0)
    for it, tr in zip(items, traces):
        assert tr.prompt.startswith("<|begin_text|><|begin_header|>user<|end_header|>\n\n" + it.question)
        assert tr.prompt.endswith("<|begin_header|>Huginn<|end_header|>\n\nThe correct answer is")
        for i, opt in enumerate(it.options):
            assert f"\n{'ABCD'[i]}) {opt}" in tr.prompt
        # bos and header are special tokens, each one id (not spelled out byte by byte)
        assert tr.prompt_ids[0] == tiny_bundle.tokenizer.convert_tokens_to_ids("<|begin_text|>")
        assert tr.prompt_ids[-1] != tiny_bundle.tokenizer.convert_tokens_to_ids("<|end_text|>")
        assert tr.probs.shape == (4, 4) and np.allclose(tr.probs.sum(1), 1)
        assert tr.correct == (None if it.variant == "nca" else it.options.index(bench.get(it.id).answer))
        assert len(tr.option_token_ids) == 4 and all(len(t) >= 1 for t in tr.option_token_ids)
