"""Cups: a state-tracking task where depth matters, and the training of a looped model on it ("cups-mini").

A ball starts under one of five cups; a sequence of swaps (``s14`` exchanges cups 1 and 4) moves it; the question
asks where the ball ends up.  Three swaps in four involve the ball's cup and the last one always does.  Tracking one ball under transpositions is non-commutative (no counting shortcut: the
order of the swaps matters), so the answer needs one sequential update per swap.  A looped model can propagate the
ball's position along the sequence, one swap per recurrent step, and read out the final cup.

Variants in the project's item format (``backend/items.py``):

* base: the answer + three distractors that a *shallower* computation gives: the cups the ball occupied after
  fewer swaps, most recent first, filled up with the remaining cups;
* easy: the answer + three words that are not cups;
* nca: the answer replaced by the fifth cup (every option is a cup, none is correct).

``python -m backend.cups train --out DIR`` trains the model (Huginn format, random depth, per-position
supervision inside the propagation front); ``python -m backend.cups make-test --out FILE`` writes the test split.
Splits are disjoint by a hash of the swap sequence.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import random
import time
from pathlib import Path
from typing import List, Optional

import torch
import torch.nn.functional as F

from .models.prompting import PromptTemplate

CUPS = [f"c{i}" for i in range(1, 6)]
SWAPS = [f"s{a + 1}{b + 1}" for a, b in itertools.combinations(range(5), 2)]
EASY = ["red", "blue", "green", "cat", "dog", "owl", "tea", "sun", "map", "key", "hat", "box"]
DOMAIN = "state-tracking"
SPLITS = ("train", "validation", "test")
TEMPLATE = PromptTemplate(
    name="cups",
    prompt="options : {options} .\n{question}",
    option_format="{letter} ) {option}",
    option_separator=" , ",
    readout="option",
    option_prefix=" ",
    notes="cups-mini: answers with the cup itself; belief = mass of each option's (single) token.",
)
WORDS = ["[PAD]", "[UNK]", "options", ":", ")", ",", ".", "?", "ball", *"ABCD", *CUPS, *SWAPS, *EASY]


def apply_swap(pos: int, swap: str) -> int:
    a, b = int(swap[1]) - 1, int(swap[2]) - 1
    return b if pos == a else a if pos == b else pos


def split_of(start: int, swaps: List[str]) -> str:
    h = int(hashlib.sha1(f"{start}:{' '.join(swaps)}".encode()).hexdigest()[:8], 16) % 10
    return "test" if h == 0 else "validation" if h == 1 else "train"


BALL_SWAP_P = 0.75  # probability that a swap involves the ball's cup (the last one always does)


def draw(rng: random.Random, n: int):
    """A start cup and n swaps; the ball moves in most swaps and always in the last one, so stopping even one
    swap early gives a wrong (and plausible) answer."""
    start = rng.randrange(5)
    swaps, path = [], [start]
    for i in range(n):
        cur = path[-1]
        if i == n - 1 or rng.random() < BALL_SWAP_P:
            other = rng.choice([c for c in range(5) if c != cur])
        else:
            a, other = rng.sample([c for c in range(5) if c != cur], 2)
            cur = a
        a, b = sorted((cur, other))
        swaps.append(f"s{a + 1}{b + 1}")
        path.append(apply_swap(path[-1], swaps[-1]))
    return start, swaps, path


def question_text(start: int, swaps: List[str]) -> str:
    return f"ball {CUPS[start]} : {' '.join(swaps)} ?"


def make_item(start: int, swaps: List[str], path: List[int], item_id: str, rng: random.Random) -> dict:
    answer = path[-1]
    plausible: List[int] = []
    for p in reversed(path[:-1]):  # where a shallower computation would put the ball, most recent first
        if p != answer and p not in plausible:
            plausible.append(p)
    rest = [c for c in range(5) if c != answer and c not in plausible]
    rng.shuffle(rest)
    order = plausible + rest  # the 4 wrong cups, most plausible first
    return {
        "id": item_id, "domain": DOMAIN, "question": question_text(start, swaps), "answer": CUPS[answer],
        "distractors": [CUPS[c] for c in order[:3]], "easy_distractors": rng.sample(EASY, 3),
        "nca_distractor": CUPS[order[3]], "swaps": len(swaps), "path": [CUPS[c] for c in path],
        "split": split_of(start, swaps),
    }


def make_split(split: str, n_items: int, swaps_range=(2, 8), seed: int = 0) -> List[dict]:
    """``n_items`` distinct items of ``split``, equally many per swap count (deterministic under seed)."""
    rng = random.Random(f"cups-{split}-{seed}")
    counts = list(range(swaps_range[0], swaps_range[1] + 1))
    out, seen = [], set()
    per = math.ceil(n_items / len(counts))
    for n in counts:
        k = 0
        while k < per and len(out) < n_items:
            start, swaps, path = draw(rng, n)
            key = (start, tuple(swaps))
            if split_of(start, swaps) != split or key in seen:
                continue
            seen.add(key)
            out.append(make_item(start, swaps, path, f"cups-{split}-{len(out):04d}", rng))
            k += 1
    return out


def build_tokenizer(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    out = Path(path) / "tokenizer.json"
    tok.save(str(out))
    return out


# ---------------------------------------------------------------------------------------------- training
def _encode(tok, text: str) -> List[int]:
    return tok.encode(text, add_special_tokens=False)


def train_batch(rng: random.Random, tok, batch: int, n: int):
    """Prompts with n swaps (equal length, no padding) and per-question-position cup targets [B, n+2]."""
    from .items import BenchmarkItem

    ids, targets = [], []
    for _ in range(batch):
        while True:
            start, swaps, path = draw(rng, n)
            if split_of(start, swaps) == "train":
                break
        d = make_item(start, swaps, path, "t", rng)
        item = BenchmarkItem.from_dict(d).instance(rng.choice(["base", "base", "easy", "nca"]), rng.randrange(24))
        ids.append(_encode(tok, TEMPLATE.render(item.question, item.options)))
        cup_ids = [tok.convert_tokens_to_ids(CUPS[p]) for p in path]
        targets.append([cup_ids[0]] + cup_ids + [cup_ids[-1]])  # start cup, after each swap, at '?'
    return torch.tensor(ids), torch.tensor(targets)


@torch.no_grad()
def step_accuracy(model, tok, items: List[dict], steps=(1, 2, 4, 8, 16, 30), seed: int = 1) -> dict:
    """Base-variant accuracy of the option readout after each of ``steps`` (original option order)."""
    from .items import BenchmarkItem

    model.eval()
    out = {}
    by_n = {}
    for d in items:
        by_n.setdefault(d["swaps"], []).append(d)
    for n, group in sorted(by_n.items()):
        its = [BenchmarkItem.from_dict(d).instance("base", 0) for d in group]
        x = torch.tensor([_encode(tok, TEMPLATE.render(i.question, i.options)) for i in its])
        opt = torch.tensor([[tok.convert_tokens_to_ids(o) for o in i.options] for i in its])
        lp = model.step_logprobs(x, max(steps), init_scale=1.0, seed=seed)
        pred = lp.gather(2, opt[:, None, :].expand(-1, lp.shape[1], -1)).argmax(-1)  # [B, K]
        out[n] = [round(float((pred[:, t - 1] == 0).float().mean()), 3) for t in steps]
    model.train()
    return out


def train(out: Path, minutes: float = 20.0, max_steps: int = 20000, seed: int = 0, batch: int = 64,
          lr: float = 3e-3, d: int = 64, heads: int = 2, inter: int = 192, max_swaps: int = 8, bptt: int = 4,
          promote: float = 0.9, eval_every: int = 250, threads: int = 1, progress: bool = True) -> dict:
    from tqdm import tqdm
    from transformers import PreTrainedTokenizerFast

    from .models.checkpoint import init_weights, save_checkpoint
    from .models.huginn import HuginnConfig, HuginnModel

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    build_tokenizer(out)
    tok = PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"))
    cfg = HuginnConfig(n_embd=d, n_heads=heads, intermediate_size=inter, vocab_size=len(WORDS), block_size=128,
                       n_layers_in_prelude=1, n_layers_in_recurrent_block=1, n_layers_in_coda=1,
                       rope_base=10000.0, init_std=math.sqrt(2 / (5 * d)), mean_recurrence=16)
    model = init_weights(HuginnModel(cfg), seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    rng = random.Random(seed)
    val = make_split("validation", 140, (2, max_swaps), seed=seed)
    nmax, log, t0 = 2, [], time.time()
    bar = tqdm(total=max_steps, disable=not progress, desc="cups")
    step = 0
    while step < max_steps and time.time() - t0 < minutes * 60:
        n = rng.randint(1, nmax)
        x, y = train_batch(rng, tok, batch, n)
        L, Q = x.shape[1], y.shape[1]
        q0 = L - Q  # first question position (the start cup)
        r = rng.randint(1, Q + 4)  # random depth, enough to reach the end of the question and beyond
        prompt = model.encode(x)
        s = model.initial_state(prompt, 1.0, [rng.randrange(2**31) for _ in range(batch)])
        with torch.no_grad():
            for _ in range(max(0, r - bptt)):
                s = model.step(s, prompt)
        s = s.detach()
        loss, cnt = 0.0, 0
        for t in range(max(1, r - bptt + 1), r + 1):
            s = model.step(s, prompt)
            k = min(t, Q)  # question positions inside the propagation front after t steps
            logits = model.readout_all(s, prompt)[:, q0:q0 + k]
            loss = loss + F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[:, :k].reshape(-1))
            cnt += 1
        loss = loss / cnt
        lr_now = lr * min(1.0, (step + 1) / 100) * (0.5 * (1 + math.cos(math.pi * step / max_steps)) * 0.9 + 0.1)
        for g in opt.param_groups:
            g["lr"] = lr_now
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", nmax=nmax, r=r)
        if step % eval_every == 0:
            acc = step_accuracy(model, tok, [v for v in val if v["swaps"] <= nmax], steps=(1, 2, 4, 8, 16, 30))
            log.append({"step": step, "minutes": round((time.time() - t0) / 60, 2), "nmax": nmax, "acc": acc})
            bar.write(f"[{step} {log[-1]['minutes']}m] nmax {nmax} acc@1,2,4,8,16,30 {acc}")
            if min(v[-1] for v in acc.values()) >= promote and nmax < max_swaps:
                nmax += 1
    bar.close()
    save_checkpoint(model, out)
    (out / "prompt_template.json").write_text(TEMPLATE.to_json())
    summary = {"steps": step, "minutes": round((time.time() - t0) / 60, 2), "final_nmax": nmax, "log": log,
               "args": {"minutes": minutes, "max_steps": max_steps, "seed": seed, "batch": batch, "lr": lr, "d": d,
                        "heads": heads, "inter": inter, "max_swaps": max_swaps, "bptt": bptt, "promote": promote}}
    (out / "training_log.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m backend.cups", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train a looped model on the cups task")
    t.add_argument("--out", required=True)
    t.add_argument("--minutes", type=float, default=20.0)
    t.add_argument("--max-steps", type=int, default=20000)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--d", type=int, default=64)
    t.add_argument("--max-swaps", type=int, default=8)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--eval-every", type=int, default=250)
    t.add_argument("--no-progress", action="store_true")
    m = sub.add_parser("make-test", help="write the test split as JSONL")
    m.add_argument("--out", required=True)
    m.add_argument("--n", type=int, default=140)
    a = ap.parse_args(argv)
    if a.cmd == "train":
        s = train(Path(a.out), a.minutes, a.max_steps, a.seed, a.batch, a.lr, a.d, max_swaps=a.max_swaps,
                  threads=a.threads, eval_every=a.eval_every, progress=not a.no_progress)
        print(json.dumps({k: v for k, v in s.items() if k != "log"}))
    else:
        items = make_split("test", a.n)
        Path(a.out).write_text("".join(json.dumps(d) + "\n" for d in items))
        print(f"wrote {len(items)} items to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
