"""Prompt templates (data, not code) and option-token resolution.

A template is a small JSON object, shown and editable in the UI:

``prompt``            the whole prompt text with ``{question}`` and ``{options}`` placeholders; special tokens are
                      written as text (``<|begin_text|>``) and become special tokens when encoded.
``option_format``     one option line, with ``{letter}`` and ``{option}``.
``option_separator``  what joins the option lines.
``readout``           ``"letter"``: the belief of option i is the mass of every single-token spelling of its
                      letter (``"A"``, ``" A"``); ``"option"``: the mass of the option text's first token (for models
                      that answer with the option itself).
``option_prefix``     with ``readout="option"``: text put before an option when finding its first token (e.g. " ").
"""
from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import List, Optional, Sequence

from ..errors import LoopLensError, UsageError
from ..fit import UnknownWordsError, item_unknown_words, unk_token_id, unknown_words_message
from .checkpoint import detect_family, read_config
from .paths import model_file

from ..settings import LETTERS, MAX_PROMPT_CHARS, MAX_TEMPLATE_CHARS  # noqa: E402
TEMPLATE_FILE = "prompt_template.json"


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    prompt: str
    option_format: str = "{letter}) {option}"
    option_separator: str = "\n"
    readout: str = "letter"
    option_prefix: str = " "
    notes: str = ""

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Text-only fields of bounded length; ``option_format`` uses only ``{letter}`` and ``{option}``, with no
        format spec or conversion (``{option:>20000000}`` would build 20 MB per option); the prompt holds
        ``{question}`` and ``{options}``.  A UsageError names the field and the problem."""
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, str):
                raise UsageError(f"prompt template: {f.name} must be text, got {type(v).__name__}")
            if len(v) > MAX_TEMPLATE_CHARS:
                raise UsageError(f"prompt template: {f.name} has {len(v)} characters; the limit is {MAX_TEMPLATE_CHARS}")
        if self.readout not in ("letter", "option"):
            raise UsageError(f"template {self.name!r}: readout must be 'letter' or 'option', got {self.readout!r}")
        for ph in ("{question}", "{options}"):
            if ph not in self.prompt:
                raise UsageError(f"template {self.name!r}: the prompt must contain the placeholder {ph}")
        try:
            parts = list(string.Formatter().parse(self.option_format))
        except ValueError as exc:
            raise UsageError(f"prompt template: option_format {self.option_format!r} is not valid ({exc}); "
                             "write {letter} and {option}, and {{ }} for literal braces") from None
        for _, name, spec, conv in parts:
            if name is None:
                continue
            if name not in ("letter", "option"):
                raise UsageError(f"prompt template: option_format may use only {{letter}} and {{option}}, "
                                 f"not {{{name}}}")
            if spec or conv:
                raise UsageError(f"prompt template: {{{name}}} in option_format takes no format spec or "
                                 f"conversion (got {{{name}{'!' + conv if conv else ''}{':' + spec if spec else ''}}})")

    def rendered_length(self, question: str, options: Sequence[str]) -> int:
        """Characters of :meth:`render`'s result, computed without building it."""
        parts = list(string.Formatter().parse(self.option_format))
        literal = sum(len(lit) for lit, *_ in parts)
        n_letter = sum(name == "letter" for _, name, *_ in parts)
        n_option = sum(name == "option" for _, name, *_ in parts)
        lines = sum(literal + n_letter + n_option * len(o) for o in options)
        block = lines + len(self.option_separator) * max(0, len(options) - 1)
        return (len(self.prompt) + self.prompt.count("{options}") * (block - len("{options}"))
                + self.prompt.count("{question}") * (len(question) - len("{question}")))

    def render(self, question: str, options: Sequence[str]) -> str:
        n = self.rendered_length(question, options)
        if n > MAX_PROMPT_CHARS:
            raise UsageError(f"the prompt would have {n} characters; the limit is {MAX_PROMPT_CHARS}: shorten the "
                             "question, the options or the template")
        lines = [self.option_format.format(letter=LETTERS[i], option=o) for i, o in enumerate(options)]
        # str.replace rather than format(): questions may contain braces.
        return self.prompt.replace("{options}", self.option_separator.join(lines)).replace("{question}", question)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "PromptTemplate":
        if not isinstance(d, dict):
            raise UsageError("a prompt template must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise UsageError(f"prompt template: unknown field(s) {', '.join(sorted(unknown))}")
        if "prompt" not in d:
            raise UsageError("prompt template: missing field 'prompt'")
        return cls(**{"name": "custom", **d})

    @classmethod
    def from_file(cls, path) -> "PromptTemplate":
        """A template from a JSON file; an unreadable file or bad JSON is a UsageError naming it."""
        try:
            text = open(path, encoding="utf-8").read()
        except OSError as exc:
            raise UsageError(f"cannot read template {path}: {exc.strerror}") from None
        return cls.from_json(text)

    @classmethod
    def from_json(cls, text: str) -> "PromptTemplate":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise UsageError(f"prompt template is not valid JSON: {exc}") from None


TEMPLATES_DIR = Path(__file__).parent / "templates"  # shipped templates, one JSON file each (README there)
BOS_FIELD = "{bos}"


def shipped_template(name: str) -> PromptTemplate:
    """A template shipped in ``templates/`` by file stem (e.g. ``"ouro"``)."""
    return PromptTemplate.from_file(TEMPLATES_DIR / f"{name}.json")


HUGINN_CHAT = shipped_template("huginn-chat")
PLAIN = shipped_template("plain")
BUILTIN_TEMPLATES = {t.name: t for t in (HUGINN_CHAT, PLAIN)}


def with_bos(template: PromptTemplate, bos: Optional[str]) -> PromptTemplate:
    """The template with ``{bos}`` replaced by the tokenizer's beginning-of-text token (or nothing)."""
    if BOS_FIELD not in template.prompt:
        return template
    return replace(template, prompt=template.prompt.replace(BOS_FIELD, bos or ""))


def family_template(family: Optional[str], tokenizer=None) -> PromptTemplate:
    """The shipped default template of a family, with the tokenizer's own BOS filled in."""
    vocab = tokenizer.get_vocab() if tokenizer is not None else {}
    bos = getattr(tokenizer, "bos_token", None) if tokenizer is not None else None
    if family == "retrofit":
        return with_bos(shipped_template("retrofit"), bos)
    if family == "parcae":
        return with_bos(shipped_template("parcae"), bos)
    if family == "ouro":
        return shipped_template("ouro-chat" if bos == "<|im_start|>" else "ouro")
    if "<|begin_header|>" in vocab:
        return HUGINN_CHAT
    return PLAIN


def template_for(model_dir: Path, tokenizer=None, family: Optional[str] = None) -> PromptTemplate:
    """The model's own template (``prompt_template.json``), else its family's shipped default (the family is
    read from the directory's config.json when not given)."""
    f = model_file(model_dir, TEMPLATE_FILE)
    if family is None:
        try:
            family = detect_family(read_config(model_dir))
        except LoopLensError:
            family = None
    if f.is_file():
        try:
            t = PromptTemplate.from_dict(json.loads(f.read_text()))
        except (json.JSONDecodeError, UsageError) as exc:
            raise LoopLensError(f"{f}: invalid prompt template: {exc}") from None
        return with_bos(t, getattr(tokenizer, "bos_token", None))
    return family_template(family, tokenizer)


@dataclass
class OptionTokens:
    """Token ids whose probability mass counts for each option (in the order shown)."""

    ids: List[List[int]]
    labels: List[str] = field(default_factory=list)  # human-readable spellings, for the UI


def resolve_option_tokens(tokenizer, template: PromptTemplate, options: Sequence[str]) -> OptionTokens:
    ids: List[List[int]] = []
    labels: List[str] = []
    unk = unk_token_id(tokenizer)  # never an option's token: every unknown word reads as it
    if template.readout == "letter":
        for i in range(len(options)):
            letter = LETTERS[i]
            found = []
            for spelling in (letter, " " + letter):
                toks = tokenizer.encode(spelling, add_special_tokens=False)
                if len(toks) == 1 and toks[0] != unk and toks[0] not in found:
                    found.append(toks[0])
            if not found:
                if i >= 2 and ids:  # earlier letters have tokens: a vocabulary with only a few letters
                    raise UsageError(
                        f"this model answers with the option letters {LETTERS[0]}-{LETTERS[i - 1]} only (its "
                        f"vocabulary has no {letter!r}): give at most {i} options")
                raise LoopLensError(
                    f"the tokenizer has no single token for the option letter {letter!r}: "
                    "use a template with readout 'option'"
                )
            ids.append(found)
            labels.append(" / ".join(repr(tokenizer.decode([t])) for t in found))
        return OptionTokens(ids, labels)
    seen = {}
    for i, opt in enumerate(options):
        toks = tokenizer.encode(template.option_prefix + opt, add_special_tokens=False)
        if not toks:
            raise UsageError(f"option {LETTERS[i]} ({opt!r}) encodes to no tokens")
        first = toks[0]
        if first == unk:  # no rewording of the other option helps: this one is not a word the model knows
            raise UnknownWordsError(unknown_words_message(tokenizer, item_unknown_words(tokenizer, "", options)))
        if first in seen:
            j = seen[first]
            raise UsageError(
                f"options {LETTERS[j]} ({options[j]!r}) and {LETTERS[i]} ({opt!r}) start with the same token "
                f"{tokenizer.decode([first])!r}; this model reads its answer from the option's first token, "
                "so they cannot be told apart: reword one of them"
            )
        seen[first] = i
        ids.append([first])
        labels.append(repr(tokenizer.decode([first])))
    return OptionTokens(ids, labels)
