"""Prompt templates are data: only known fields, text only, bounded sizes, checked before anything is built."""
import pytest

from backend.errors import UsageError
from backend.models.prompting import HUGINN_CHAT, PLAIN, PromptTemplate
from backend.settings import MAX_PROMPT_CHARS


@pytest.mark.parametrize("fmt,msg", [("{option:>20000000}", "format spec"), ("{letter!r}) {option}", "conversion"),
                                     ("{nope} {option}", "only {letter} and {option}"), ("{0}", "only"),
                                     ("{option.__class__}", "only"), ("{letter", "not valid")])
def test_option_format_allows_only_the_known_fields_plainly(fmt, msg):
    with pytest.raises(UsageError, match="option_format|format spec|conversion") as e:
        PromptTemplate.from_dict({"prompt": "{question}\n{options}", "option_format": fmt})
    assert msg in str(e.value)


@pytest.mark.parametrize("field", ["prompt", "option_separator", "option_format", "name", "option_prefix"])
def test_fields_must_be_text(field):
    d = {"prompt": "{question}\n{options}", field: ["x"]}
    with pytest.raises(UsageError, match=f"{field} must be text"):
        PromptTemplate.from_dict(d)


def test_prompt_length_is_checked_before_the_prompt_is_built():
    t = PromptTemplate.from_dict({"prompt": "{question}\n{options}", "option_separator": "x" * 19_000})
    with pytest.raises(UsageError, match="limit"):
        PromptTemplate.from_dict({"prompt": "{question}{options}", "notes": "n" * 10**6})
    with pytest.raises(UsageError, match=f"limit is {MAX_PROMPT_CHARS}"):
        t.render("q", [str(i) for i in range(10)] + ["y" * MAX_PROMPT_CHARS])


def test_rendered_length_matches_render():
    custom = PromptTemplate("c", "Q {question} {options} / {options}", option_format="{{{letter}}} {option}|{option}",
                            option_separator=" -- ")
    for t in (HUGINN_CHAT, PLAIN, custom):
        q, opts = "What is {x}?", ["a", "bb", "ccc {y}"]
        assert t.rendered_length(q, opts) == len(t.render(q, opts))


def test_unknown_option_words_are_named_instead_of_a_same_token_collision():
    """cups-mini reads its answer from an option's first token: English options all start with [UNK], which no
    rewording of "the other option" fixes; the message names the words and what the model reads."""
    from backend.fit import UnknownWordsError
    from backend.models import load_tokenizer, resolve_option_tokens
    from backend.settings import MODELS_DIR

    tok = load_tokenizer(MODELS_DIR / "cups-mini")
    template = PromptTemplate.from_file(MODELS_DIR / "cups-mini" / "prompt_template.json")
    assert template.readout == "option"
    with pytest.raises(UnknownWordsError) as e:
        resolve_option_tokens(tok, template, ["Canberra", "Sydney", "c1"])
    msg = str(e.value)
    assert "'Canberra' (option A); 'Sydney' (option B)" in msg and "ball" in msg
    assert "same token" not in msg and "reword" not in msg and "[UNK]" not in msg
    # a real collision between known words keeps its own message
    with pytest.raises(UsageError, match="same token"):
        resolve_option_tokens(tok, template, ["c1", "c1"])


def test_a_vocabulary_with_few_letters_says_how_many_options_it_takes():
    from backend.models import load_tokenizer, resolve_option_tokens
    from backend.settings import MODELS_DIR

    tok = load_tokenizer(MODELS_DIR / "cups-letters")
    template = PromptTemplate.from_file(MODELS_DIR / "cups-letters" / "prompt_template.json")
    assert len(resolve_option_tokens(tok, template, ["c1", "c2", "c3", "c4"]).ids) == 4
    with pytest.raises(UsageError, match="letters A-D only .*at most 4 options"):
        resolve_option_tokens(tok, template, ["c1", "c2", "c3", "c4", "c5"])
