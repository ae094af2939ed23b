"""One trainer for looped models (Huginn format), built on the model's own methods.

The task supplies batches with per-position targets and the step from which each position is supervised
(:class:`backend.cups.Batch`), a validation set per difficulty level and an accuracy function.  The trainer:

* samples a recurrent depth ``r`` per batch (uniform in 1..depth+4, where ``depth`` is the number of steps after
  which every supervised position of the batch is ready), runs ``model.encode`` once, ``model.initial_state``
  (random, one seed per row), ``model.step`` r times with gradients through the last ``bptt`` steps only, and
  ``model.readout_all`` after each of those steps; the loss is the cross-entropy at every position whose target is
  ready at that step, averaged over the window;
* follows a curriculum over the task's levels (e.g. the number of swaps): it starts at ``start_level`` and adds one
  when validation accuracy after ``eval_steps[-1]`` steps reaches ``promote`` on every level so far;
* optionally starts from another checkpoint (``init_from``: every tensor whose name and shape match is copied);
* saves with :func:`backend.models.checkpoint.save_checkpoint`, plus the tokenizer, the prompt template and
  ``training_log.json``.  Given ``max_steps`` (and a wall-clock limit that is not reached) a run is deterministic.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from .models.checkpoint import init_weights, load_checkpoint, save_checkpoint
from .models.huginn import HuginnConfig, HuginnModel


@dataclass
class TrainConfig:
    max_steps: int = 20000
    minutes: float = 60.0
    seed: int = 0
    batch: int = 64
    lr: float = 3e-3
    warmup: int = 100
    lr_horizon: int = 12000  # cosine decay to 0.1 x lr over this many steps, whatever max_steps is
    d: int = 64
    heads: int = 2
    inter: int = 192
    layers: tuple = (1, 1, 1)  # prelude, core, coda
    bptt: int = 4
    extra_depth: int = 4
    start_level: int = 2
    promote: float = 0.9
    eval_every: int = 250
    eval_steps: tuple = (1, 2, 4, 8, 16, 30)
    init_from: Optional[str] = None
    threads: int = 1
    save_every: int = 0  # also save the checkpoint every this many steps (0: only at the end)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to 0.1 x lr over ``lr_horizon`` steps.  It does not depend on
    ``max_steps``, so a run stopped at step k (by the clock) is reproduced exactly by ``max_steps=k``."""
    frac = min(1.0, step / cfg.lr_horizon)
    return cfg.lr * min(1.0, (step + 1) / cfg.warmup) * (0.5 * (1 + math.cos(math.pi * frac)) * 0.9 + 0.1)


def build_model(cfg: TrainConfig, vocab_size: int) -> HuginnModel:
    hc = HuginnConfig(n_embd=cfg.d, n_heads=cfg.heads, intermediate_size=cfg.inter, vocab_size=vocab_size,
                      block_size=128, n_layers_in_prelude=cfg.layers[0], n_layers_in_recurrent_block=cfg.layers[1],
                      n_layers_in_coda=cfg.layers[2], rope_base=10000.0, init_std=math.sqrt(2 / (5 * cfg.d)),
                      mean_recurrence=16)
    model = init_weights(HuginnModel(hc), seed=cfg.seed)
    if cfg.init_from:
        src = load_checkpoint(cfg.init_from).state_dict()
        own = model.state_dict()
        with torch.no_grad():
            for k, v in src.items():
                if k in own and own[k].shape == v.shape:
                    own[k].copy_(v)
    return model


def window_loss(model: HuginnModel, batch, r: int, bptt: int, seeds) -> torch.Tensor:
    """Mean over the last ``bptt`` of ``r`` steps of the cross-entropy at the positions ready at that step; with
    ``batch.group`` each group of positions (e.g. the answer, an auxiliary target) weighs the same."""
    prompt = model.encode(batch.input_ids)
    s = model.initial_state(prompt, 1.0, seeds)
    first = max(1, r - bptt + 1)
    with torch.no_grad():
        for _ in range(first - 1):
            s = model.step(s, prompt)
    s = s.detach()
    losses = []
    for t in range(first, r + 1):
        s = model.step(s, prompt)
        on = (batch.ready > 0) & (batch.ready <= t)
        logits = model.readout_all(s, prompt)
        if batch.group is None:
            losses.append(F.cross_entropy(logits[on], batch.target[on]))
            continue
        parts = []
        for g in batch.group[on].unique().tolist():
            sel = on & (batch.group == g)
            parts.append(F.cross_entropy(logits[sel], batch.target[sel]))
        losses.append(torch.stack(parts).mean())
    return torch.stack(losses).mean()


def train(task, out, cfg: TrainConfig, progress: bool = True, log_fn=print) -> dict:
    """Train a looped model on ``task`` and save it to ``out``; returns the training summary."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    task.write_tokenizer(out)
    model = build_model(cfg, task.vocab_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.98))
    rng = random.Random(cfg.seed)
    val = task.validation_items(seed=cfg.seed)
    level, log, t0, step = cfg.start_level, [], time.time(), 0
    lo = task.min_swaps
    while step < cfg.max_steps and time.time() - t0 < cfg.minutes * 60:
        n = rng.randint(lo, level)
        b = task.batch(rng, cfg.batch, n)
        r = rng.randint(1, b.depth + cfg.extra_depth)
        loss = window_loss(model, b, r, cfg.bptt, [rng.randrange(2**31) for _ in range(cfg.batch)])
        lr_now = learning_rate(cfg, step)
        for g in opt.param_groups:
            g["lr"] = lr_now
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            model.eval()
            acc = {k: task.accuracy(model, v, cfg.eval_steps) for k, v in sorted(val.items()) if k <= level}
            model.train()
            log.append({"step": step, "minutes": round((time.time() - t0) / 60, 2), "level": level,
                        "loss": round(float(loss.detach()), 4), "acc": acc})
            if progress:
                log_fn(f"[{step} {log[-1]['minutes']}m] level {level} loss {float(loss.detach()):.3f} "
                       f"acc@{','.join(map(str, cfg.eval_steps))} {acc}")
            if acc and min(v[-1] for v in acc.values()) >= cfg.promote and level < task.max_swaps:
                level += 1
        if cfg.save_every and step % cfg.save_every == 0:
            _save(model, task, out, cfg, step, level, t0, log)
    return _save(model, task, out, cfg, step, level, t0, log)


def _save(model, task, out: Path, cfg: TrainConfig, step: int, level: int, t0: float, log: list) -> dict:
    save_checkpoint(model, out)
    (out / "prompt_template.json").write_text(task.template.to_json())
    summary = {"steps": step, "minutes": round((time.time() - t0) / 60, 2), "final_level": level,
               "stopped_by": "max_steps" if step >= cfg.max_steps else "minutes",
               "reproduce": f"max_steps={step} (the schedule does not depend on max_steps)",
               "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
               "task": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(task).items()}, "log": log}
    (out / "training_log.json").write_text(json.dumps(summary, indent=1))
    return summary
