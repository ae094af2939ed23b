"""What a model can read (backend/fit.py): unknown words on the shipped word-level tokenizer and on subword ones,
and the plain message about them."""
from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from backend import fit
from backend.models import load_tokenizer
from backend.settings import MODELS_DIR
from model_builders import make_tokenizer_json


@pytest.fixture(scope="module")
def cups_tok():
    return load_tokenizer(MODELS_DIR / "cups-letters")


@pytest.fixture(scope="module")
def subword_tok():
    """A BPE tokenizer with an unknown token, trained on plain ASCII English: accented letters are unknown."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = ["the cafe is open and the naive cat sleeps", "what is the capital of france paris london"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=200, special_tokens=["[UNK]"],
                                                        show_progress=False))
    return tok


def test_the_cups_tokenizer_knows_its_task_and_names_the_users_words_it_does_not(cups_tok):
    assert fit.unknown_words(cups_tok, "ball c2 : s34 s23 ?") == []
    assert fit.unknown_words(cups_tok, "What is the capital of Australia?") == \
        ["What", "is", "the", "capital", "of", "Australia?"]
    # each word once, in the user's spelling, known words left out
    assert fit.unknown_words(cups_tok, "ball  Ball c2 Ball c9") == ["Ball", "c9"]
    assert fit.unk_token_id(cups_tok) == cups_tok.convert_tokens_to_ids("[UNK]")


def test_a_subword_tokenizer_reports_the_whole_word_around_an_unknown_character(subword_tok):
    assert fit.unknown_words(subword_tok, "the cafe is open") == []
    assert fit.unknown_words(subword_tok, "the café is naïve, café") == ["café", "naïve,"]
    assert not fit.is_word_level(subword_tok)
    msg = fit.unknown_words_message(subword_tok, fit.item_unknown_words(subword_tok, "a café?", ["x", "naïve"]))
    assert "'café?' (the question)" in msg and "'naïve' (option B)" in msg
    assert "subword model" in msg and "replace or remove them" in msg


def test_a_byte_level_tokenizer_knows_every_word(tmp_path):
    tok = Tokenizer.from_file(str(make_tokenizer_json(tmp_path)))
    assert fit.unk_token_id(tok) is None
    assert fit.unknown_words(tok, "What is the capital of Австралия? 🦘") == []


def test_the_message_lists_a_small_vocabulary_and_suggests_no_rewording(cups_tok):
    with pytest.raises(fit.UnknownWordsError) as e:
        fit.check_readable(cups_tok, "What is the capital of Australia?", ["Canberra", "c1", "Perth"],
                           name="cups-letters")
    msg = str(e.value)
    assert msg.startswith("cups-letters does not know the words 'What', 'is', 'the', 'capital', 'of', "
                          "'Australia?' (the question); 'Canberra' (option A); 'Perth' (option C)")
    assert "38 words" in msg and "ball" in msg and "c1–c5" in msg and "s12…s45 (10 words)" in msg
    assert "[UNK]" not in msg and "[PAD]" not in msg and "reword" not in msg
    fit.check_readable(cups_tok, "ball c2 : s34 s23 ?", ["c3", "c2", "c5", "c1"])  # no error


def test_compact_words_shortens_numbered_runs():
    assert fit.compact_words(["a", "c1", "c2", "c3", "b"]) == "a c1–c3 b"
    assert fit.compact_words(["s12", "s13", "s23", "x1", "x2"]) == "s12…s23 (3 words) x1 x2"
