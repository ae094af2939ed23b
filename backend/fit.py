"""What a model can read: the words of a text its tokenizer has no token for, and a plain message about them.

A word-level model (the shipped cups models: a vocabulary of 38 words) reads every other word as its unknown
token; a subword model with an unknown token reads characters outside its alphabet that way (a byte-level model
never does).  Those words reach the model as one and the same token, so a question written with them is not
a question the model can answer: the app says so *before* running, names the words, and says what the model
reads (its vocabulary when it is small, else that it is a subword model).

Works on a ``tokenizers.Tokenizer``, a transformers fast tokenizer, or a loaded bundle (its ``tokenizer``).
Unknown tokens are mapped back to the user's words with the tokenizer's character offsets.
"""
from __future__ import annotations

import json
import re
from typing import Dict, List, Optional, Sequence

from .errors import UsageError
from .settings import LETTERS

SMALL_VOCABULARY = 100      # a word-level vocabulary this small is listed in the message
MAX_WORDS_SHOWN = 12        # unknown words named per message (then "and N more")
_NUMBERED = re.compile(r"^([A-Za-z]+)(\d+)$")
_SPECIAL = re.compile(r"^(\[[A-Za-z_]+\]|<\|?[^<>\s]+\|?>)$")  # [PAD], <unk>, <|endoftext|>


class UnknownWordsError(UsageError):
    """A question or option holds words the model has no token for (they would all read as its unknown token)."""


def _backend(tok):
    """The ``tokenizers.Tokenizer`` behind a bundle, a transformers fast tokenizer or a Tokenizer itself."""
    if hasattr(tok, "model") and hasattr(tok, "tokenizer") and not hasattr(tok, "encode_batch"):
        tok = tok.tokenizer  # a LoadedModel
    return getattr(tok, "backend_tokenizer", tok)


def _model_json(tok) -> dict:
    try:
        return json.loads(_backend(tok).to_str()).get("model") or {}
    except (AttributeError, ValueError, TypeError):
        return {}


def unk_token_id(tok) -> Optional[int]:
    """The id of the tokenizer's unknown token, or None when it has none (byte-level models)."""
    backend = _backend(tok)
    model = _model_json(backend)
    if isinstance(model.get("unk_id"), int):  # Unigram
        return model["unk_id"]
    unk = model.get("unk_token")
    if isinstance(unk, str) and unk:
        return backend.token_to_id(unk)
    return None


def unknown_words(tok, text: str) -> List[str]:
    """The words of ``text`` (split at white space, as the user wrote them, each once, in order) that hold a
    token the tokenizer does not know; [] when it knows them all or has no unknown token."""
    unk = unk_token_id(tok)
    if unk is None or not text:
        return []
    enc = _backend(tok).encode(text, add_special_tokens=False)
    out: List[str] = []
    for tid, (start, end) in zip(enc.ids, enc.offsets):
        if tid != unk:
            continue
        while start > 0 and not text[start - 1].isspace():
            start -= 1
        while end < len(text) and not text[end].isspace():
            end += 1
        word = text[start:end] or text
        if word not in out:
            out.append(word)
    return out


def is_word_level(tok) -> bool:
    return _model_json(tok).get("type") == "WordLevel"


def vocabulary_words(tok) -> List[str]:
    """The words a word-level tokenizer reads, in id order, without its special tokens ([PAD], [UNK], <...>)."""
    backend = _backend(tok)
    vocab = backend.get_vocab(with_added_tokens=True)
    unk = unk_token_id(backend)
    return [w for w, i in sorted(vocab.items(), key=lambda kv: kv[1]) if i != unk and not _SPECIAL.match(w)]


def compact_words(words: Sequence[str]) -> str:
    """Words joined by spaces, with runs of numbered words shortened: c1 c2 c3 c4 c5 -> c1–c5 (consecutive
    numbers), s12 s13 ... s45 -> s12…s45 (10 words)."""
    groups: Dict[str, List[str]] = {}
    for w in words:
        m = _NUMBERED.match(w)
        if m:
            groups.setdefault(m.group(1), []).append(w)
    out, done = [], set()
    for w in words:
        m = _NUMBERED.match(w)
        if not m or len(groups[m.group(1)]) < 3:
            out.append(w)
            continue
        prefix = m.group(1)
        if prefix in done:
            continue
        done.add(prefix)
        g = groups[prefix]
        nums = [int(_NUMBERED.match(x).group(2)) for x in g]
        consecutive = nums == list(range(nums[0], nums[0] + len(nums)))
        out.append(f"{g[0]}–{g[-1]}" if consecutive else f"{g[0]}…{g[-1]} ({len(g)} words)")
    return " ".join(out)


def reads_note(tok, name: str = "this model") -> str:
    """What the model reads, in one sentence: its vocabulary when it is word-level and small, else its kind."""
    if is_word_level(tok):
        words = vocabulary_words(tok)
        if len(words) < SMALL_VOCABULARY:
            return f"{name} reads only the {len(words)} words of its vocabulary, separated by spaces: " \
                   f"{compact_words(words)}"
        return f"{name} reads whole words from a vocabulary of {len(words)} words, separated by spaces"
    size = _backend(tok).get_vocab_size(with_added_tokens=True)
    return (f"{name} is a subword model ({size} tokens): it spells words from pieces, but has no piece for "
            "the characters named")


def _quoted(words: Sequence[str]) -> str:
    shown = ", ".join(repr(w) for w in words[:MAX_WORDS_SHOWN])
    return shown + (f" and {len(words) - MAX_WORDS_SHOWN} more" if len(words) > MAX_WORDS_SHOWN else "")


def item_unknown_words(tok, question: str, options: Sequence[str]) -> Dict[str, List[str]]:
    """Unknown words per field ("the question", "option A", ...), only the fields that have some."""
    out = {}
    for label, text in [("the question", question)] + [(f"option {LETTERS[i]}", o) for i, o in enumerate(options)]:
        words = unknown_words(tok, text)
        if words:
            out[label] = words
    return out


def unknown_words_message(tok, unknown: Dict[str, List[str]], name: str = "this model") -> str:
    """One plain paragraph: which words (where) the model does not know, and what it reads instead."""
    parts = [f"{_quoted(words)} ({label})" for label, words in unknown.items()]
    head = f"{name} does not know the words {'; '.join(parts)}: it would read each of them as its unknown token."
    if is_word_level(tok) and len(vocabulary_words(tok)) < SMALL_VOCABULARY:
        tail = f" {reads_note(tok, 'It')}."
    elif is_word_level(tok):
        tail = f" {reads_note(tok, 'It')}: use words from it."
    else:
        tail = f" {reads_note(tok, 'It')}: replace or remove them."
    return head + tail


def check_readable(tok, question: str, options: Sequence[str], name: str = "this model") -> None:
    """Raise :class:`UnknownWordsError` with :func:`unknown_words_message` when the question or an option holds
    words the model does not know."""
    unknown = item_unknown_words(tok, question, options)
    if unknown:
        raise UnknownWordsError(unknown_words_message(tok, unknown, name))
