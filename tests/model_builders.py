"""Builders of small random checkpoints in each family's exact format, with a small tokenizer carrying the
family's special tokens (and a ``tokenizer_config.json`` naming them, as the releases ship)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import torch

from backend.models.checkpoint import build_model, checkpoint_state_dict, init_weights, save_checkpoint, \
    write_config
from backend.models.huginn import HuginnConfig, HuginnModel
from backend.models.ouro import OuroConfig
from backend.models.parcae import ParcaeConfig
from backend.models.retrofit import RetrofitConfig

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "huginn-golden"
GOLDENS = {f: FIXTURES / f"{f}-golden" for f in ("huginn", "retrofit", "ouro", "parcae")}
FAMILIES = ("huginn", "retrofit", "ouro", "parcae")
HUGINN_SPECIALS = ["<|begin_text|>", "<|end_text|>", "<|begin_header|>", "<|end_header|>", "<|end_turn|>",
                   "<|pad|>"]
# family -> (special tokens in the vocabulary, tokenizer_config.json's bos / eos)
TOKENIZER_SPECIALS = {
    "huginn": (HUGINN_SPECIALS, None),
    "retrofit": (["<|begin_of_text|>", "<|end_of_text|>"], ("<|begin_of_text|>", "<|end_of_text|>")),
    "ouro": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], ("<|endoftext|>", "<|endoftext|>")),
    "parcae": (["<|bos|>", "<|eos|>", "<|pad|>"], ("<|bos|>", "<|eos|>")),
}


def small_config(**kw) -> HuginnConfig:
    base = dict(n_embd=64, n_heads=2, intermediate_size=128, vocab_size=512, block_size=512,
                n_layers_in_prelude=2, n_layers_in_recurrent_block=4, n_layers_in_coda=2,
                init_std=(2 / (5 * 64)) ** 0.5, mean_recurrence=8)
    base.update(kw)
    return HuginnConfig(**base)


def family_config(family: str, **kw):
    """A small config of each family, with every feature of the release switched on (GQA, llama3 RoPE
    scaling, value embeddings, exit gate, ...)."""
    if family == "huginn":
        return small_config(**kw)
    if family == "retrofit":
        base = dict(n_embd=64, n_heads=4, num_key_value_heads=2, intermediate_size=128, vocab_size=512,
                    block_size=512, n_layers_in_prelude=2, n_layers_in_recurrent_block=2, n_layers_in_coda=2,
                    rope_theta=500000.0, norm_eps=1e-5, mean_recurrence=4, init_std=math.sqrt(2 / (5 * 5280)),
                    rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
        return RetrofitConfig(**{**base, **kw})
    if family == "ouro":
        base = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, head_dim=16,
                    intermediate_size=160, vocab_size=512, max_position_embeddings=512, total_ut_steps=4)
        return OuroConfig(**{**base, **kw})
    if family == "parcae":
        base = dict(n_embd=64, num_attention_heads=4, num_key_value_heads=4, intermediate_size=128,
                    padded_vocab_size=512, block_size=512, n_layers_in_prelude=2, n_layers_in_recurrent_block=2,
                    n_layers_in_coda=2, mean_recurrence=8, mean_backprop_depth=4)
        return ParcaeConfig(**{**base, **kw})
    raise ValueError(family)


def make_model(seed: int = 0, **kw) -> HuginnModel:
    torch.manual_seed(seed)
    return init_weights(HuginnModel(small_config(**kw)), seed=seed).eval()


def make_family_model(family: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    model = build_model(family_config(family, **kw))
    return init_weights(model, seed=seed).eval()


def make_tokenizer_json(path: Path, vocab_size: int = 512, specials=None, bos_template: Optional[str] = None) -> Path:
    """A byte-level BPE tokenizer with the given special tokens (default Huginn's), trained on a little English
    text; ``bos_template`` adds a post-processor that prepends that token (as Llama-3's tokenizer.json does)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = specials or HUGINN_SPECIALS
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [
        "The correct answer is A. The correct answer is B. The correct answer is C. The correct answer is D.",
        "Answer with the letter of the correct option. A) B) C) D) E) F)",
        "What is the capital of France? Paris London Berlin Madrid Rome",
        "user Huginn question answer option letter number the of a is in and to what which how many",
        "Question: Answer: assistant skating creek mandated",
    ] * 20
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    if bos_template:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos_template} $A", pair=f"{bos_template} $A {bos_template} $B",
            special_tokens=[(bos_template, tok.token_to_id(bos_template))])
    out = Path(path) / "tokenizer.json"
    tok.save(str(out))
    return out


def write_family_tokenizer(path: Path, family: str, vocab_size: int) -> None:
    specials, named = TOKENIZER_SPECIALS[family]
    make_tokenizer_json(path, vocab_size=vocab_size, specials=specials,
                        bos_template="<|begin_of_text|>" if family == "retrofit" else None)
    if named:
        (Path(path) / "tokenizer_config.json").write_text(json.dumps(
            {"bos_token": named[0], "eos_token": named[1], "tokenizer_class": "PreTrainedTokenizerFast"}))


def make_bundle_dir(path: Path, seed: int = 0, **kw) -> Path:
    model = make_model(seed, **kw)
    save_checkpoint(model, path)
    make_tokenizer_json(path, vocab_size=model.config.vocab_size)
    return Path(path)


def make_family_dir(path: Path, family: str, seed: int = 0, *, dtype=None, max_shard_bytes=None,
                    pickle: bool = False, **kw) -> Path:
    """A checkpoint directory of the family (safetensors, or Parcae's ``pytorch_model.bin`` with ``pickle``)
    plus its tokenizer, ready for ``python -m backend trace --model DIR``."""
    path = Path(path)
    model = make_family_model(family, seed, **kw)
    if pickle:
        path.mkdir(parents=True, exist_ok=True)
        write_config(model.config, path)
        torch.save(checkpoint_state_dict(model, dtype), path / "pytorch_model.bin")
    else:
        save_checkpoint(model, path, dtype=dtype, max_shard_bytes=max_shard_bytes)
    write_family_tokenizer(path, family, model.config.vocab_size)
    return path
