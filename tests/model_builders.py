"""Builders of small random checkpoints in Huginn-0125's exact format, with a Huginn-style tokenizer."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from backend.models.checkpoint import init_weights, save_checkpoint
from backend.models.huginn import HuginnConfig, HuginnModel

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "huginn-golden"
HUGINN_SPECIALS = ["<|begin_text|>", "<|end_text|>", "<|begin_header|>", "<|end_header|>", "<|end_turn|>",
                   "<|pad|>"]


def small_config(**kw) -> HuginnConfig:
    base = dict(n_embd=64, n_heads=2, intermediate_size=128, vocab_size=512, block_size=512,
                n_layers_in_prelude=2, n_layers_in_recurrent_block=4, n_layers_in_coda=2,
                init_std=(2 / (5 * 64)) ** 0.5, mean_recurrence=8)
    base.update(kw)
    return HuginnConfig(**base)


def make_model(seed: int = 0, **kw) -> HuginnModel:
    torch.manual_seed(seed)
    return init_weights(HuginnModel(small_config(**kw)), seed=seed).eval()


def make_tokenizer_json(path: Path, vocab_size: int = 512) -> Path:
    """A byte-level BPE tokenizer with Huginn's special tokens, trained on a little English text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [
        "The correct answer is A. The correct answer is B. The correct answer is C. The correct answer is D.",
        "Answer with the letter of the correct option. A) B) C) D) E) F)",
        "What is the capital of France? Paris London Berlin Madrid Rome",
        "user Huginn question answer option letter number the of a is in and to what which how many",
    ] * 20
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=HUGINN_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    out = Path(path) / "tokenizer.json"
    tok.save(str(out))
    return out


def make_bundle_dir(path: Path, seed: int = 0, **kw) -> Path:
    model = make_model(seed, **kw)
    save_checkpoint(model, path)
    make_tokenizer_json(path, vocab_size=model.config.vocab_size)
    return Path(path)
