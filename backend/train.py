"""Train a looped model on synthetic multi-hop pointer chasing ("hopper": an earlier default-model attempt; the shipped default is cups-mini, see backend/cups.py).

    python -m backend.train --out DIR --seed 0     (defaults = the hopper-mini run recorded in the cups-mini model card)

A Huginn-format model (prelude / core / coda, concat adapter, random initial state, RoPE) is trained at random
depth, as Huginn was: every batch samples a number of recurrent steps r (log-normal Poisson around a mean that
grows with the curriculum), runs the first r - bptt steps without gradients and the last ``bptt`` with
gradients, and supervises every step of that window ("progress" supervision: after step t the readout should
name the entity reached after min(t, k) hops; weight ``--progress-weight`` for t < k, 1 for t >= k; 0 gives
pure answer-only supervision at the last ``sup`` steps).  Each training prompt carries up to ``--queries``
queries over the same facts (dense supervision; the last query is exactly the evaluation prompt).  A curriculum on the hop
count starts at 2 hops and adds one when the validation accuracy at 30 steps on the current hardest hop count
reaches ``--promote``.  The model sees no shortcut to the answer (see ``backend/synthetic.py``) and one core
block can do at most about one lookup per step, so depth is needed.

Deterministic under ``--seed`` (fixed data order, seeded torch) as long as ``--max-steps`` ends the run before
``--minutes`` does.  ``--max-steps 3`` gives a seconds-long smoke run.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import List, Sequence

import torch
import torch.nn.functional as F

from .items import BenchmarkItem, Item
from .models.checkpoint import init_weights, save_checkpoint
from .models.huginn import HuginnConfig, HuginnModel
from .models.prompting import PromptTemplate, resolve_option_tokens
from . import synthetic as syn

TEMPLATE = PromptTemplate(
    name="hopper",
    prompt="options : {options} .\n{question}",
    option_format="{letter} ) {option}",
    option_separator=" , ",
    readout="option",
    option_prefix=" ",
    notes="hopper-mini: answers with the entity itself; belief = mass of each option's (single) token.",
)


# ----------------------------------------------------------------------------------------------- data
def train_batch(rng: random.Random, tok, batch: int, max_hops: int, n_entities: int, max_queries: int = 6):
    """A left-padded training batch with several queries per prompt (dense supervision).

    Each prompt is the evaluation prompt (options = answer of the LAST query + 3 random other prompt entities,
    random order) in which the final ``start : x`` may be preceded by up to ``max_queries - 1`` earlier queries
    with their answers written out: ``... steps : k . start : x1 y1 start : x2 y2 start : x``.  All queries of
    a prompt share k and have distinct starts.  The model reads every query at its start token (the next token
    is the answer), so one prompt gives up to ``max_queries`` supervised positions; with one query the prompt is
    exactly the evaluation prompt.

    Returns ids [B,S], attention mask [B,S], query positions [B,Q] (-1 = none), progress targets [B,Q,H+1]
    (entity reached after min(t,k) hops from the query start), and the hop count per row [B].
    """
    vocab = tok.get_vocab()
    rows, qpos, qtgt, hops = [], [], [], []
    while len(rows) < batch:
        k = max_hops if rng.random() < 0.5 else rng.randint(1, max_hops)
        raw = syn.draw_chain(rng, k, n_entities)
        if syn.split_of(raw["facts"]) != "train":
            continue
        ents, n = raw["ents"], n_entities
        m = rng.randint(1, max_queries)
        starts = rng.sample(range(n), m)
        paths = [[ents[(i0 + j) % n] for j in range(k + 1)] for i0 in starts]
        last_answer = paths[-1][k]
        others = rng.sample([e for e in ents if e != last_answer], 3)
        opts = others + [last_answer]
        rng.shuffle(opts)
        q = syn.question_text(raw["facts"], paths[0][0], k)
        for pth, nxt in zip(paths[:-1], paths[1:]):
            q += f" {pth[k]} start : {nxt[0]}"
        ids = tok.encode(TEMPLATE.render(q, opts)).ids
        # query positions: every 'start :' entity token
        s_id = vocab["start"]
        pos = [i + 2 for i, t in enumerate(ids) if t == s_id]
        assert len(pos) == m and ids[-1] == vocab[paths[-1][0]]
        rows.append(ids)
        qpos.append(pos)
        qtgt.append([[vocab[p[j]] for j in range(k + 1)] + [vocab[p[k]]] * (max_hops - k) for p in paths])
        hops.append(k)
    S = max(len(r) for r in rows)
    B = len(rows)
    ids = torch.zeros(B, S, dtype=torch.long)
    mask = torch.zeros(B, S, dtype=torch.long)
    Q = max_queries
    pos_t = torch.full((B, Q), -1, dtype=torch.long)
    tgt_t = torch.zeros(B, Q, max_hops + 1, dtype=torch.long)
    for b, (r, pos, tg) in enumerate(zip(rows, qpos, qtgt)):
        off = S - len(r)
        ids[b, off:] = torch.tensor(r)
        mask[b, off:] = 1
        pos_t[b, :len(pos)] = torch.tensor(pos) + off
        tgt_t[b, :len(pos)] = torch.tensor(tg)
    return ids, mask, pos_t, tgt_t, torch.tensor(hops)


def sample_steps(gen: torch.Generator, mean: float, sigma: float = 0.5, lo: int = 1, hi: int = 32) -> int:
    """Huginn's depth sampling: tau ~ N(log mean - sigma^2/2, sigma), r = Poisson(e^tau) + 1, clipped."""
    tau = torch.normal(math.log(mean) - sigma ** 2 / 2, sigma, (1,), generator=gen)
    r = int(torch.poisson(tau.exp(), generator=gen).item()) + 1
    return max(lo, min(hi, r))


def initial_state(model: HuginnModel, like: torch.Tensor, gen: torch.Generator, scale: float = 1.0):
    """Same recipe as HuginnModel.initial_state (truncated normal +-3 std, times sqrt(E)), batched."""
    std = model.config.init_std * scale
    if std == 0:
        return torch.zeros_like(like)
    out = torch.empty(like.shape, dtype=torch.float32)
    torch.nn.init.trunc_normal_(out, 0.0, std, -3 * std, 3 * std, generator=gen)
    return (out * model.config.gamma).to(like.dtype)


# ----------------------------------------------------------------------------------------------- eval
def encode_items(tok, items: Sequence[Item], template: PromptTemplate = TEMPLATE):
    """Left-padded ids, attention mask and option token ids [N, n_options] for a list of Items."""
    from .models.prompting import OptionTokens  # noqa: F401

    texts = [template.render(it.question, it.options) for it in items]
    enc = [tok.encode(t, add_special_tokens=False) if hasattr(tok, "encode") and not hasattr(tok, "encode_batch")
           else tok.encode(t).ids for t in texts]
    S = max(len(e) for e in enc)
    pad = 0
    ids = torch.full((len(enc), S), pad, dtype=torch.long)
    mask = torch.zeros((len(enc), S), dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, S - len(e):] = torch.tensor(e)
        mask[i, S - len(e):] = 1
    return ids, mask, texts


@torch.no_grad()
def step_beliefs(model: HuginnModel, tok, items: Sequence[Item], steps: int = 30, seed: int = 1234,
                 init_scale: float = 1.0, batch: int = 256) -> torch.Tensor:
    """Belief over each item's options after every step: [N, steps, n_options] (option readout, renormalised)."""
    vocab = tok.get_vocab()
    opt_ids = torch.tensor([[vocab[o] for o in it.options] for it in items])
    out = []
    gen = torch.Generator().manual_seed(seed)
    for b0 in range(0, len(items), batch):
        chunk = items[b0:b0 + batch]
        ids, mask, _ = encode_items(tok, chunk)
        am = None if bool(mask.all()) else mask
        ctx = model.context(ids, am)
        e = model.embed(ids, ctx)
        s = initial_state(model, e, gen, init_scale) * (mask[..., None] if am is not None else 1)
        rows = []
        oi = opt_ids[b0:b0 + batch]
        for _ in range(steps):
            s = model.core_step(s, e, ctx)
            lp = model.readout(s, ctx)
            rows.append(torch.softmax(lp.gather(1, oi), dim=-1))
        out.append(torch.stack(rows, 1))
    return torch.cat(out)


def step_accuracy(model, tok, bitems: Sequence[BenchmarkItem], steps: int = 30, variant: str = "base",
                  permutation: int = 0, seed: int = 1234):
    items = [b.instance(variant, permutation) for b in bitems]
    probs = step_beliefs(model, tok, items, steps, seed)
    correct = torch.tensor([it.correct for it in items])
    hit = (probs.argmax(-1) == correct[:, None]).float()  # [N, steps]
    hops = torch.tensor([b.extra["hops"] for b in bitems])
    per_hop = {int(h): hit[hops == h].mean(0).tolist() for h in hops.unique()}
    return hit.mean(0).tolist(), per_hop


# ----------------------------------------------------------------------------------------------- main
def build_model(a) -> HuginnModel:
    cfg = HuginnConfig(
        n_embd=a.d, n_heads=a.heads, intermediate_size=a.inter, vocab_size=a.vocab, block_size=256,
        n_layers_in_prelude=a.prelude, n_layers_in_recurrent_block=a.core, n_layers_in_coda=a.coda,
        rope_base=10000.0, mean_recurrence=30, init_std=math.sqrt(2 / (5 * a.d)),
    )
    model = HuginnModel(cfg)
    init_weights(model, a.seed)
    return model


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=26.0, help="wall-clock cap (the run stops and saves)")
    ap.add_argument("--max-steps", type=int, default=3000, help="optimizer steps (the LR schedule uses this)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--inter", type=int, default=192)
    ap.add_argument("--prelude", type=int, default=2)
    ap.add_argument("--core", type=int, default=1)
    ap.add_argument("--coda", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=96)
    ap.add_argument("--n-entities", type=int, default=8)
    ap.add_argument("--start-hops", type=int, default=1)
    ap.add_argument("--max-hops", type=int, default=6)
    ap.add_argument("--promote", type=float, default=0.8)
    ap.add_argument("--mean-steps", type=float, default=0.0, help="mean sampled depth (0: 2*hops+4)")
    ap.add_argument("--bptt", type=int, default=4)
    ap.add_argument("--queries", type=int, default=6, help="max queries per training prompt (dense supervision)")
    ap.add_argument("--progress-weight", type=float, default=0.5,
                    help="weight of the progress loss: after step t < k the readout should name the entity "
                         "reached after t hops (0 = Huginn-style, answer only)")
    ap.add_argument("--long-frac", type=float, default=0.1,
                    help="fraction of batches with a long depth (mean 3*hops+8) for stability at 30 steps")
    ap.add_argument("--sup", type=int, default=3, help="supervise the answer at the last SUP steps")
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--eval-items", type=int, default=20, help="validation items per hop count")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is much faster than 2 on a shared 2-core machine: measured 6-10x)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--init-from", default=None, help="continue from a checkpoint dir with the same architecture")
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    gen = torch.Generator().manual_seed(a.seed + 1)
    tok = syn.build_tokenizer()
    assert tok.get_vocab_size() <= a.vocab
    model = build_model(a)
    if a.init_from:
        from .models.checkpoint import load_checkpoint

        src = load_checkpoint(a.init_from)
        if src.config.to_json_dict() != model.config.to_json_dict():
            raise SystemExit(f"--init-from {a.init_from}: its config differs from the requested architecture")
        model.load_state_dict(src.state_dict())
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.98))
    warm = min(100, max(1, a.max_steps // 10))

    def lr_at(step):
        if step < warm:
            return a.lr * (step + 1) / warm
        p = (step - warm) / max(1, a.max_steps - warm)
        return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))

    val = [BenchmarkItem.from_dict(d) for d in
           syn.generate("validation", a.eval_items * len(range(1, a.max_hops + 1)), seed=a.seed,
                        hops=tuple(range(1, a.max_hops + 1)), n_entities=a.n_entities)]
    cur = min(a.start_hops, a.max_hops)
    log = {"args": vars(a), "n_params": n_params, "evals": [], "promotions": []}
    t0 = time.time()
    step = 0
    try:
        from tqdm import tqdm
        bar = tqdm(total=a.max_steps, disable=a.no_progress, mininterval=2.0)
    except ImportError:  # pragma: no cover
        bar = None
    ema = None
    while step < a.max_steps and (time.time() - t0) < a.minutes * 60:
        ids, am, qpos, qtgt, hops = train_batch(rng, tok, a.batch, cur, a.n_entities, a.queries)
        mean = a.mean_steps if a.mean_steps > 0 else 2 * cur + 4
        if a.long_frac > 0 and rng.random() < a.long_frac:
            mean = 3 * cur + 8
        r = max(sample_steps(gen, mean), a.sup)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        ctx = model.context(ids, am)
        e = model.embed(ids, ctx)
        s = initial_state(model, e, gen) * am[..., None].to(e.dtype)
        n_nograd = max(0, r - a.bptt)
        if n_nograd:
            with torch.no_grad():
                ed = e.detach()
                for _ in range(n_nograd):
                    s = model.core_step(s, ed, ctx)
        valid = qpos >= 0  # [B, Q]
        bidx = torch.arange(ids.shape[0])[:, None].expand_as(qpos)[valid]
        pidx = qpos[valid]
        hq = hops[:, None].expand_as(qpos)[valid]
        loss = 0.0
        for t in range(n_nograd + 1, r + 1):
            s = model.core_step(s, e, ctx)
            last = t > r - a.sup
            if a.progress_weight <= 0 and not last:
                continue
            logits = model.full_logits(s, ctx)[bidx, pidx]  # [N, V] at every query position
            target = qtgt[valid][:, min(t, qtgt.shape[-1] - 1)] if a.progress_weight > 0 else qtgt[valid][:, -1]
            ce = F.cross_entropy(logits, target, reduction="none")
            if a.progress_weight > 0:
                # progress supervision: after step t < k the readout should name the entity t hops away
                w = torch.where(hq <= t, 1.0, a.progress_weight)
                loss = loss + (w * ce).sum() / w.sum() / a.bptt * (1.0 if last else 0.5)
            else:
                loss = loss + ce.mean() / a.sup  # answer only (Huginn-style), at the last SUP steps
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.3f}", hops=cur, r=r)
        if step % a.eval_every == 0 or step == a.max_steps:
            model.eval()
            acc, per_hop = step_accuracy(model, tok, val, steps=30, seed=a.seed)
            model.train()
            rec = {"step": step, "minutes": round((time.time() - t0) / 60, 2), "loss": round(ema, 4),
                   "cur_hops": cur, "acc_step": [round(x, 3) for x in acc],
                   "acc30_per_hop": {h: round(v[-1], 3) for h, v in per_hop.items()},
                   "acc2_per_hop": {h: round(v[1], 3) for h, v in per_hop.items()}}
            log["evals"].append(rec)
            msg = (f"[{step} {rec['minutes']}m] loss {ema:.3f} hops<={cur} acc@1,2,4,8,16,30 = "
                   + " ".join(f"{acc[i]:.2f}" for i in (0, 1, 3, 7, 15, 29))
                   + " | @30 per hop " + " ".join(f"{h}:{v[-1]:.2f}" for h, v in per_hop.items()))
            (bar.write if bar is not None else print)(msg)
            if cur < a.max_hops and per_hop.get(cur, [0])[-1] >= a.promote:
                cur += 1
                log["promotions"].append({"step": step, "hops": cur})
    if bar is not None:
        bar.close()
    log["steps_done"] = step
    log["train_minutes"] = round((time.time() - t0) / 60, 2)
    out = Path(a.out)
    model.eval()
    save_checkpoint(model, out, extra_config={"looplens_training": {
        "task": "hopper multi-hop pointer chasing (backend/synthetic.py)", "seed": a.seed,
        "steps": step, "minutes": log["train_minutes"]}})
    tok.save(str(out / "tokenizer.json"))
    (out / "prompt_template.json").write_text(TEMPLATE.to_json())
    (out / "training_log.json").write_text(json.dumps(log, indent=1))
    return log


if __name__ == "__main__":
    main()
