"""Synthetic multi-hop pointer-chasing items ("hopper" task: an earlier default-model attempt, see data/models/cups-mini/README.md).

Each item states a set of facts ``a > b`` that form ONE random cycle over ``n_entities`` entities (every entity
appears exactly once on the left and once on the right of a fact, facts in random order), names a start entity
and a number of steps ``k``, and asks for the entity reached after following ``>`` k times from the start.

Why this task: the answer needs k *sequential* lookups (each depends on the previous one), and nothing local
tells the options apart -- every option is an entity of the same cycle with exactly one predecessor and one
successor -- so only following the chain finds the answer.  There is no shortcut such as "the option that never
appears on the left".

Variants (the project's JSONL schema, see ``backend/items.py``):

* base: answer = ``f^k(start)``; the three distractors are what a *shallower* (or slightly overshooting)
  computation answers: ``f^(k-1), f^(k-2), ..., f^0 (= the start)``, then ``f^(k+1), f^(k+2), ...``, taken in that
  order of preference;
* easy: three entities of the pool that do not appear in the prompt at all;
* nca: the answer replaced by the next chain entity in the same preference order (so no option is correct).

Extra fields: ``hops`` (k), ``n_entities``, ``path`` (the entities f^0..f^(k+3)), ``split`` and ``fact_hash``.

Splits: an item belongs to the split given by a hash of its *fact set* (sorted facts): bucket 0 = test,
1 = validation, 2..9 = train.  So train / validation / test never share a fact set, let alone an item, and
the training stream is generated on the fly by rejecting items whose fact set falls in another bucket.
Everything is driven by ``random.Random(seed)``: the same arguments always give the same items.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

DOMAIN = "multi-hop"
# 48 entity words: every one is a single token of the hopper tokenizer (word level).
POOL: List[str] = """ant bee cat dog eel fox gnu hen owl pig rat yak bat cod cow elk emu ewe
jay kid koi lab mole newt orca puma ram seal toad vole wasp wolf wren zebu crab crow deer dove duck frog
goat hare lark lion lynx mink moth mule""".split()
assert len(POOL) == len(set(POOL)) == 48

SPLITS = ("train", "validation", "test")
N_BUCKETS = 10


def fact_hash(facts: Iterable[str]) -> str:
    return hashlib.sha1(" ; ".join(sorted(facts)).encode()).hexdigest()


def split_of(facts: Iterable[str]) -> str:
    b = int(fact_hash(facts)[:8], 16) % N_BUCKETS
    return "test" if b == 0 else "validation" if b == 1 else "train"


def question_text(facts: Sequence[str], start: str, hops: int) -> str:
    # The start entity is the last token: the model's next token is the answer (read at the last position).
    return f"facts : {' ; '.join(facts)} . steps : {hops} . start : {start}"


def draw_chain(rng: random.Random, hops: int, n_entities: int = 8) -> dict:
    """One raw item: a random cycle, a start, the path and the answer (no split filtering)."""
    if n_entities < 7 or not 1 <= hops <= n_entities - 2:
        raise ValueError(f"need n_entities >= 7 and hops in 1..{n_entities - 2}")
    ents = rng.sample(POOL, n_entities)  # the cycle, in chain order; ents[0] is the start
    facts = [f"{ents[i]} > {ents[(i + 1) % n_entities]}" for i in range(n_entities)]
    rng.shuffle(facts)
    path = [ents[i % n_entities] for i in range(hops + 4)]  # wraps around the cycle
    return {"ents": ents, "facts": facts, "start": ents[0], "hops": hops, "path": path, "answer": path[hops]}


def plausible_order(path: Sequence[str], hops: int) -> List[str]:
    """Distractor candidates, most plausible first: shallower computations, then overshoots (distinct)."""
    out: List[str] = []
    for x in [path[j] for j in range(hops - 1, -1, -1)] + [path[hops + 1], path[hops + 2], path[hops + 3]]:
        if x != path[hops] and x not in out:
            out.append(x)
    return out


def make_item(rng: random.Random, hops: int, n_entities: int = 8, item_id: str = "") -> dict:
    raw = draw_chain(rng, hops, n_entities)
    cands = plausible_order(raw["path"], hops)
    absent = [w for w in POOL if w not in raw["ents"]]
    easy = rng.sample(absent, 3)
    return {
        "id": item_id,
        "domain": DOMAIN,
        "question": question_text(raw["facts"], raw["start"], hops),
        "answer": raw["answer"],
        "distractors": cands[:3],
        "easy_distractors": easy,
        "nca_distractor": cands[3],
        "hops": hops,
        "n_entities": n_entities,
        "path": raw["path"],
        "split": split_of(raw["facts"]),
        "fact_hash": fact_hash(raw["facts"]),
    }


def generate(split: str, n: int, seed: int = 0, hops: Sequence[int] = tuple(range(2, 7)),
             n_entities: int = 8, prefix: Optional[str] = None) -> List[dict]:
    """``n`` items of ``split``, hop counts cycling through ``hops`` (balanced), deterministic in ``seed``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    rng = random.Random(f"hopper/{split}/{seed}")
    prefix = prefix or f"hop-{split[:4]}"
    out, seen = [], set()
    while len(out) < n:
        k = hops[len(out) % len(hops)]
        item = make_item(rng, k, n_entities, item_id=f"{prefix}-{len(out):04d}")
        if item["split"] != split or item["fact_hash"] in seen:
            continue
        seen.add(item["fact_hash"])
        out.append(item)
    return out


def write_jsonl(items: Iterable[Dict], path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(json.dumps(it) + "\n" for it in items))
    return p


# --------------------------------------------------------------------------------------------- tokenizer
SPECIAL = ["<pad>", "<unk>"]
PUNCT = [":", ";", ".", ">", ")", ",", "?", "\n"]
WORDS = ["facts", "start", "steps", "options", "answer"]
LETTER_TOKENS = list("ABCDEFGHIJ")
DIGITS = [str(i) for i in range(10)]


def vocabulary() -> List[str]:
    return SPECIAL + PUNCT + WORDS + LETTER_TOKENS + DIGITS + POOL


def build_tokenizer():
    """A word-level ``tokenizers.Tokenizer`` (whitespace + punctuation split); every entity is one token."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(SPECIAL)
    return tok


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="write hopper items as JSONL")
    ap.add_argument("--split", default="test", choices=SPLITS)
    ap.add_argument("--n", type=int, default=140)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    write_jsonl(generate(a.split, a.n, a.seed), a.out)


if __name__ == "__main__":
    main()
