"""backend/train.py: one trainer for looped models, on the model's own encode/initial_state/step/readout_all."""
from __future__ import annotations

import json
import random

import torch

from backend import cups
from backend.models import load_model
from backend.train import TrainConfig, build_model, train, window_loss


def test_window_loss_only_counts_ready_positions():
    task = cups.CupsTask(readout="letter", variants=("base",))
    cfg = TrainConfig(d=16, heads=2, inter=32)
    model = build_model(cfg, task.vocab_size)
    b = task.batch(random.Random(0), 4, 2)
    l1 = window_loss(model, b, 1, 4, [0, 1, 2, 3])
    b.target[:, -1] = 0  # the '?' target is not ready at step 1: changing it changes nothing
    b.target[:, -1, 0] = 1.0
    assert torch.allclose(l1, window_loss(model, b, 1, 4, [0, 1, 2, 3]))
    assert not torch.allclose(window_loss(model, b, b.depth, 4, [0, 1, 2, 3]), l1)
    window_loss(model, b, b.depth, 2, [0, 1, 2, 3]).backward()
    assert model.transformer.wte.weight.grad.abs().sum() > 0


def test_training_is_deterministic_given_max_steps(tmp_path):
    task = cups.CupsTask(readout="letter", variants=("base", "nca"), option_letters=True, front_letters=True,
                         max_swaps=3)
    cfg = TrainConfig(max_steps=4, d=16, inter=32, batch=8, eval_every=2, eval_steps=(1, 4))
    a, b = train(task, tmp_path / "a", cfg, progress=False), train(task, tmp_path / "b", cfg, progress=False)
    ma, mb = load_model(tmp_path / "a"), load_model(tmp_path / "b")
    for (k, v), (_, w) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.equal(v, w), k
    assert [r["acc"] for r in a["log"]] == [r["acc"] for r in b["log"]] and a["stopped_by"] == "max_steps"
    log = json.loads((tmp_path / "a" / "training_log.json").read_text())
    assert log["task"]["front_letters"] is True and log["steps"] == 4


def test_warm_start_copies_matching_tensors(tmp_path):
    task = cups.CupsTask(readout="letter", variants=("base",), max_swaps=2)
    src = train(task, tmp_path / "src", TrainConfig(max_steps=1, d=16, inter=32, batch=4, eval_every=1,
                                                     eval_steps=(1,)), progress=False)
    assert src["steps"] == 1
    m = build_model(TrainConfig(d=16, inter=32, seed=5, init_from=str(tmp_path / "src")), task.vocab_size)
    ref = load_model(tmp_path / "src")
    assert torch.equal(m.transformer.wte.weight, ref.transformer.wte.weight)
