"""The cups task: a ball under five cups, moved by swaps; where does it end up?  (Task only: no training loop.)

A ball starts under one of five cups; a sequence of swaps (``s14`` exchanges cups 1 and 4) moves it; the question
asks where the ball ends up.  Tracking one ball under transpositions is non-commutative (the order of the swaps
matters), so the answer needs one sequential update per swap: a looped model can propagate the ball's position
along the sequence, one swap per recurrent step.

This module holds the task: the generator (with each distractor annotated by what it is), benchmark items in the
project's format (``backend/items.py``), the hash split, the word-level tokenizer, the prompt templates, and the
per-position training targets a looped trainer (``backend/train.py``) consumes.

Variants:

* base: the answer + three distractors that a *shallower* computation gives (the cups the ball occupied after
  fewer swaps, most recent first), filled up with the remaining cups;
* easy: the answer + three words that are not cups;
* nca: the answer replaced by the fifth cup (every option is a cup, none is correct).

Two generators share this code: ``cups-mini`` (the last swap always moves the ball, a surface cue) and the
letter-readout task (``last_ball_p`` < 1: the last swap moves the ball only sometimes).  Splits are disjoint by a
hash of the start cup and the swap sequence.
"""
from __future__ import annotations

import hashlib
import itertools
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from .items import BenchmarkItem
from .models.prompting import PromptTemplate
from .settings import LETTERS

CUPS = [f"c{i}" for i in range(1, 6)]
SWAPS = [f"s{a + 1}{b + 1}" for a, b in itertools.combinations(range(5), 2)]
EASY = ["red", "blue", "green", "cat", "dog", "owl", "tea", "sun", "map", "key", "hat", "box"]
DOMAIN = "state-tracking"
SPLITS = ("train", "validation", "test")
WORDS = ["[PAD]", "[UNK]", "options", ":", ")", ",", ".", "?", "ball", *"ABCD", *CUPS, *SWAPS, *EASY]
VOCAB = {w: i for i, w in enumerate(WORDS)}
N_LETTERS = 4
_PROMPT = "options : {options} .\n{question}"
OPTION_TEMPLATE = PromptTemplate(
    name="cups", prompt=_PROMPT, option_format="{letter} ) {option}", option_separator=" , ", readout="option",
    option_prefix=" ",
    notes="cups-mini: answers with the cup itself; belief = mass of each option's (single) token.",
)
LETTER_TEMPLATE = PromptTemplate(
    name="cups-letters", prompt=_PROMPT, option_format="{letter} ) {option}", option_separator=" , ",
    readout="letter",
    notes="cups-letters: answers with the option letter; belief = mass of each option's letter A-D.",
)
TEMPLATE = OPTION_TEMPLATE  # cups-mini's (kept name)

BALL_SWAP_P = 0.75  # probability that a swap (other than the last) involves the ball's cup

# distractor kinds (the annotation's "kind"; the text adds the numbers)
KIND_STATE = "earlier state"        # the ball's cup after k of n swaps (k < n)
KIND_LAST_SWAP = "named in the last swap"  # a cup of the last swap the ball never occupied
KIND_NEVER = "never reached"        # a cup the ball never occupied and the last swap does not name
KIND_EASY = "not a cup"


def apply_swap(pos: int, swap: str) -> int:
    a, b = int(swap[1]) - 1, int(swap[2]) - 1
    return b if pos == a else a if pos == b else pos


def split_of(start: int, swaps: List[str]) -> str:
    h = int(hashlib.sha1(f"{start}:{' '.join(swaps)}".encode()).hexdigest()[:8], 16) % 10
    return "test" if h == 0 else "validation" if h == 1 else "train"


def draw(rng: random.Random, n: int, last_ball_p: float = 1.0, ball_p: float = BALL_SWAP_P):
    """A start cup and n swaps: swap i involves the ball's cup with probability ``ball_p`` (the last one with
    ``last_ball_p``; 1.0 is cups-mini's generator, where stopping one swap early is always wrong).  Returns
    (start, swaps, path) with path[k] = the ball's cup after k swaps."""
    start = rng.randrange(5)
    swaps, path = [], [start]
    for i in range(n):
        cur = path[-1]
        if i == n - 1:  # cups-mini's generator (last_ball_p 1) draws no number for the last swap
            moves = last_ball_p >= 1.0 or rng.random() < last_ball_p
        else:
            moves = rng.random() < ball_p
        if moves:
            other = rng.choice([c for c in range(5) if c != cur])
        else:
            cur, other = rng.sample([c for c in range(5) if c != cur], 2)
        a, b = sorted((cur, other))
        swaps.append(f"s{a + 1}{b + 1}")
        path.append(apply_swap(path[-1], swaps[-1]))
    return start, swaps, path


def question_text(start: int, swaps: List[str]) -> str:
    return f"ball {CUPS[start]} : {' '.join(swaps)} ?"


def parse_question(question: str):
    """(start cup index, swaps) of a cups question."""
    words = question.split()
    return CUPS.index(words[1]), words[3:-1]


def simulate(start: int, swaps: Sequence[str]) -> List[int]:
    path = [start]
    for s in swaps:
        path.append(apply_swap(path[-1], s))
    return path


def annotate(cup: int, path: List[int], swaps: List[str]) -> dict:
    """What a wrong cup is, for a question whose ball path is ``path`` (path[k] after k swaps)."""
    n = len(swaps)
    ks = [k for k in range(n) if path[k] == cup]
    last = {int(swaps[-1][1]) - 1, int(swaps[-1][2]) - 1} if swaps else set()
    if ks:
        k = ks[-1]
        return {"kind": KIND_STATE, "after": k, "of": n, "in_last_swap": cup in last,
                "text": f"state after {k} of {n} swaps"}
    if cup in last:
        return {"kind": KIND_LAST_SWAP, "in_last_swap": True, "text": "named in the last swap, never the ball's cup"}
    return {"kind": KIND_NEVER, "in_last_swap": False, "text": "never reached"}


def make_item(start: int, swaps: List[str], path: List[int], item_id: str, rng: random.Random) -> dict:
    answer = path[-1]
    plausible: List[int] = []
    for p in reversed(path[:-1]):  # where a shallower computation would put the ball, most recent first
        if p != answer and p not in plausible:
            plausible.append(p)
    rest = [c for c in range(5) if c != answer and c not in plausible]
    rng.shuffle(rest)
    order = plausible + rest  # the 4 wrong cups, most plausible first
    easy = rng.sample(EASY, 3)
    notes = {CUPS[c]: annotate(c, path, swaps) for c in order}
    notes.update({w: {"kind": KIND_EASY, "in_last_swap": False, "text": "not a cup"} for w in easy})
    return {
        "id": item_id, "domain": DOMAIN, "question": question_text(start, swaps), "answer": CUPS[answer],
        "distractors": [CUPS[c] for c in order[:3]], "easy_distractors": easy,
        "nca_distractor": CUPS[order[3]], "swaps": len(swaps), "path": [CUPS[c] for c in path],
        "last_swap_moves_ball": path[-2] != path[-1] if swaps else False,
        "distractor_notes": notes, "split": split_of(start, swaps),
    }


def make_split(split: str, n_items: int, swaps_range=(2, 8), seed: int = 0, last_ball_p: float = 1.0,
               prefix: str = "cups", exclude: Optional[set] = None, id_prefix: Optional[str] = None) -> List[dict]:
    """``n_items`` distinct items of ``split``, equally many per swap count (deterministic under seed).

    The defaults are cups-mini's test split (unchanged: the same items as before annotations were added)."""
    tag = "" if last_ball_p == 1.0 else f"-p{last_ball_p}"
    rng = random.Random(f"cups-{split}-{seed}{tag}")
    counts = list(range(swaps_range[0], swaps_range[1] + 1))
    out, seen = [], set(exclude or ())
    per = math.ceil(n_items / len(counts))
    for n in counts:
        k = tries = 0
        while k < per and len(out) < n_items:
            tries += 1
            if tries > 100_000:
                raise ValueError(f"cannot find {per} distinct {split} items with {n} swaps")
            start, swaps, path = draw(rng, n, last_ball_p)
            key = question_text(start, swaps)
            if split_of(start, swaps) != split or key in seen:
                continue
            seen.add(key)
            out.append(make_item(start, swaps, path, f"{id_prefix or prefix + '-' + split}-{len(out):04d}", rng))
            k += 1
    return out


def build_tokenizer(path: Path) -> Path:
    tok = Tokenizer(models.WordLevel(dict(VOCAB), unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    out = Path(path) / "tokenizer.json"
    tok.save(str(out))
    return out


def encode(text: str) -> List[int]:
    return [VOCAB.get(w, VOCAB["[UNK]"]) for w in text.split()]


# ------------------------------------------------------------------------------------- training targets
@dataclass
class Batch:
    """One training batch for the looped trainer: ``target`` [B, S, V] distributions, ``ready`` [B, S] the first
    recurrent step at which a position's target is supervised (0 = never)."""

    input_ids: torch.Tensor
    target: torch.Tensor
    ready: torch.Tensor
    depth: int  # steps after which every supervised position is ready
    group: Optional[torch.Tensor] = None  # [B, S] loss group of each position (each group weighs the same)


@dataclass
class CupsTask:
    """The cups task as the trainer sees it: batches with per-position targets, and validation accuracy.

    Per-position supervision (the "propagation front"): after recurrent step t, question position j (0 = the
    start cup) is trained towards the ball's cup after j-1 swaps when t >= j+1.  At ``?`` the answer (the final
    cup with ``readout="option"``; its option letter with ``"letter"``, uniform over the letters when no option is
    correct) is trained once t reaches the end of the question.  ``option_letters``: each option token is also
    trained towards its own letter from step 1; ``front_letters``: inside the front, a question position whose cup
    is shown is trained half towards the cup and half towards that option's letter (the letter lookup is then
    practised at every position and depth, not only at ``?`` at full depth)."""

    readout: str = "letter"
    last_ball_p: float = 0.5
    variants: Sequence[str] = ("base",)
    option_letters: bool = False
    front_letters: bool = False
    min_swaps: int = 1
    max_swaps: int = 8

    vocab_size = len(WORDS)

    @staticmethod
    def write_tokenizer(path: Path) -> Path:
        return build_tokenizer(path)

    @property
    def template(self) -> PromptTemplate:
        return LETTER_TEMPLATE if self.readout == "letter" else OPTION_TEMPLATE

    def draw_train(self, rng: random.Random, n: int):
        while True:
            start, swaps, path = draw(rng, n, self.last_ball_p)
            if split_of(start, swaps) == "train":
                return start, swaps, path

    def example(self, rng: random.Random, n: int):
        start, swaps, path = self.draw_train(rng, n)
        d = make_item(start, swaps, path, "t", rng)
        variant = rng.choice(list(self.variants))
        item = BenchmarkItem.from_dict(d).instance(variant, rng.randrange(24))
        ids = encode(self.template.render(item.question, item.options))
        V = len(WORDS)
        S, Q = len(ids), n + 3
        target = torch.zeros(S, V)
        ready = torch.zeros(S, dtype=torch.long)
        group = torch.ones(S, dtype=torch.long)  # 0: the answer at '?', 1: the front, 2: the option letters
        group[S - 1] = 0
        q0 = S - Q
        cups_seq = [path[0]] + path + [path[-1]]  # start cup, ':' (start), after each swap, '?'
        letter_of = {o: LETTERS[i] for i, o in enumerate(item.options)}
        for j in range(Q - 1):
            cup = CUPS[cups_seq[j]]
            if self.front_letters and cup in letter_of:  # half on the cup, half on its option letter
                target[q0 + j, VOCAB[cup]] = 0.5
                target[q0 + j, VOCAB[letter_of[cup]]] = 0.5
            else:
                target[q0 + j, VOCAB[cup]] = 1.0
            ready[q0 + j] = j + 1
        if self.readout == "option":
            target[S - 1, VOCAB[CUPS[path[-1]]]] = 1.0
        elif item.correct is None:
            target[S - 1, [VOCAB[LETTERS[i]] for i in range(item.n_options)]] = 1.0 / item.n_options
        else:
            target[S - 1, VOCAB[LETTERS[item.correct]]] = 1.0
        ready[S - 1] = Q
        if self.option_letters:
            k = 0
            for pos in range(1, S):
                if ids[pos - 1] == VOCAB[")"] and k < item.n_options:
                    target[pos, VOCAB[LETTERS[k]]] = 1.0
                    ready[pos] = 1
                    group[pos] = 2
                    k += 1
        return ids, target, ready, Q, group

    def batch(self, rng: random.Random, batch: int, n: int) -> Batch:
        rows = [self.example(rng, n) for _ in range(batch)]
        return Batch(torch.tensor([r[0] for r in rows]), torch.stack([r[1] for r in rows]),
                     torch.stack([r[2] for r in rows]), rows[0][3], torch.stack([r[4] for r in rows]))

    def validation_items(self, seed: int = 0, per_count: int = 20) -> Dict[int, List[dict]]:
        counts = range(max(2, self.min_swaps), self.max_swaps + 1)  # 0-1 swaps have too few distinct questions
        items = make_split("validation", per_count * len(counts), (counts[0], counts[-1]), seed=seed,
                           last_ball_p=self.last_ball_p)
        out: Dict[int, List[dict]] = {}
        for d in items:
            out.setdefault(d["swaps"], []).append(d)
        return out

    @torch.no_grad()
    def accuracy(self, model, items: List[dict], steps=(1, 2, 4, 8, 16, 30), seed: int = 1) -> List[float]:
        """Base-variant accuracy after each of ``steps`` (answer order k % 24 for the k-th item)."""
        its = [BenchmarkItem.from_dict(d).instance("base", k % 24) for k, d in enumerate(items)]
        x = torch.tensor([encode(self.template.render(i.question, i.options)) for i in its])
        if self.readout == "letter":
            opt = torch.tensor([[VOCAB[LETTERS[j]] for j in range(i.n_options)] for i in its])
        else:
            opt = torch.tensor([[VOCAB[o] for o in i.options] for i in its])
        correct = torch.tensor([i.correct for i in its])
        lp = model.step_logprobs(x, max(steps), init_scale=1.0, seed=seed)
        pred = lp.gather(2, opt[:, None, :].expand(-1, lp.shape[1], -1)).argmax(-1)  # [B, K]
        return [round(float((pred[:, t - 1] == correct).float().mean()), 3) for t in steps]


# ------------------------------------------------------------------------------------- recipes and splits
HARD_SWAPS = (12, 15)  # the hard split: longer than any training question (training stops at 8 swaps)
# The shipped models' training recipes: the task, and the trainer's settings (backend.train.TrainConfig fields).
RECIPES: Dict[str, tuple] = {
    "cups-mini": (CupsTask(readout="option", last_ball_p=1.0, variants=("base", "base", "easy", "nca"), min_swaps=1),
                  dict(max_steps=12000, minutes=17.0, lr=3e-3)),
    "cups-letters": (CupsTask(readout="letter", last_ball_p=0.5, variants=("base", "base", "base", "easy", "nca"),
                              option_letters=True, front_letters=True, min_swaps=1),
                     dict(max_steps=12000, minutes=60.0, lr=3e-3, init_from="cups-mini")),
}


def benchmark_splits(model: str) -> Dict[str, List[dict]]:
    """The benchmark files of a shipped cups model: file stem -> items.

    cups-mini: its test split (unchanged).  cups-letters: ``-test`` (held out by hash, 2-8 swaps, the last swap
    moves the ball half of the time, as in training), ``-probe`` (the last swap never moves the ball: the surface cue
    "the answer is a cup of the last swap" is broken; held out, disjoint from -test), ``-hard`` (12-15 swaps, longer
    than any training question; held out)."""
    if model == "cups-mini":
        return {"cups-mini-test": make_split("test", 140)}
    if model != "cups-letters":
        raise ValueError(f"no splits defined for {model!r}")
    test = make_split("test", 140, (2, 8), seed=0, last_ball_p=0.5)
    seen = {d["question"] for d in test}
    probe = make_split("test", 140, (2, 8), seed=1, last_ball_p=0.0, exclude=seen)
    seen |= {d["question"] for d in probe}
    hard = make_split("test", 120, HARD_SWAPS, seed=2, last_ball_p=0.5, exclude=seen)
    return {"cups-letters-test": interleave(test, "cl-test"), "cups-letters-probe": interleave(probe, "cl-probe"),
            "cups-letters-hard": interleave(hard, "cl-hard")}


def interleave(items: List[dict], id_prefix: str) -> List[dict]:
    """Items reordered so that the swap counts take turns (any prefix, e.g. ``sweep --limit``, is balanced), and
    renumbered ``<id_prefix>-0000`` on."""
    by_n: Dict[int, List[dict]] = {}
    for d in items:
        by_n.setdefault(d["swaps"], []).append(d)
    out = [d for group in itertools.zip_longest(*by_n.values()) for d in group if d is not None]
    return [{**d, "id": f"{id_prefix}-{i:04d}"} for i, d in enumerate(out)]
