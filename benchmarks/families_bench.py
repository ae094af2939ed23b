"""Memory and speed of the looped families at their real sizes, with random weights (issue 11, part 4).

Run by hand (not in CI), with nothing else heavy running:

    python benchmarks/families_bench.py --dir /tmp/looplens-real [--families ouro,retrofit] [--threads 1]

1. Writes random-weight checkpoints at the real configs into DIR (once; reused after): Ouro-1.4B in its release
   layout (one bf16 ``model.safetensors``, 2.87 GB) and Recurrent-Llama-3.2-train-recurrence-16 (fp32, 2 shards
   + index, 5.54 GB), each with a small word-level tokenizer.  Never commit them: they are random and large.
2. For each, in a fresh process: peak RSS while loading as float32, against the checkpoint's size on disk and the
   model's size in memory (one copy); then the time of a full per-step trace (``trace_items``: every step read
   out, top-k, hidden states) of a ~120-token question, Ouro 4 steps / retrofit 16 steps, against the same
   K-step forward read out once at the end (``iterate_steps(readout_every_step=False)``), both measured in the
   same process, alternating, best of ``--repeats``.
Prints one line per family with the ratios.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from transformers import PreTrainedTokenizerFast  # noqa: E402,F401  (imported before the RSS baseline)

from backend.items import Item  # noqa: E402
from backend.models import load_bundle  # noqa: E402
from backend.models.checkpoint import INDEX_FILE, SINGLE_FILE, build_model, write_config  # noqa: E402
from backend.models.ouro import OuroConfig  # noqa: E402
from backend.models.retrofit import RetrofitConfig  # noqa: E402
from backend.trace import trace_items  # noqa: E402

REAL = {
    # ByteDance/Ouro-1.4B (ouro-format.md): 1,434,652,673 parameters, 269 tensors, bf16
    "ouro": (OuroConfig(hidden_size=2048, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=16,
                        head_dim=128, intermediate_size=5632, vocab_size=49152, max_position_embeddings=65536,
                        rms_norm_eps=1e-6, rope_theta=1e6, total_ut_steps=4), torch.bfloat16, None, 4),
    # smcleish/Recurrent-Llama-3.2-train-recurrence-16 (retrofit-format.md): 1,385,228,288 parameters, 88 tensors
    "retrofit": (RetrofitConfig(n_embd=2048, n_heads=32, num_key_value_heads=8, intermediate_size=8192,
                                vocab_size=128256, block_size=1024, n_layers_in_prelude=4,
                                n_layers_in_recurrent_block=6, n_layers_in_coda=4, rope_theta=500000.0,
                                rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                                norm_eps=1e-5, mean_recurrence=16, init_std=math.sqrt(2 / (5 * 5280))),
                 torch.float32, 2 * 2**30 + 2**29, 16),
}
EXPECTED_PARAMS = {"ouro": 1_434_652_673, "retrofit": 1_385_228_288}
QUESTION = ("A farmer keeps three kinds of animals in two fields next to the river . In the first field there are "
            "seven sheep , four goats and two horses ; in the second field there are five sheep , six goats and "
            "one horse . In the spring the farmer moves all the goats from the second field into the first field "
            "and sells two of the sheep from the first field at the market in the town . Later a neighbour gives "
            "the farmer three more horses , which are put into the second field with the animals that are still "
            "there . How many animals are in the first field now , after all of these changes have been made ?")
OPTIONS = ("fifteen", "nineteen", "twenty", "twenty one")


def write_checkpoint(family: str, out: Path) -> None:
    cfg, dtype, shard_bytes, _ = REAL[family]
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(cfg, "meta")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    n = sum(math.prod(s) for s in shapes.values())
    assert n == EXPECTED_PARAMS[family] or os.environ.get("LOOPLENS_BENCH_SMALL"), (family, n)
    g = torch.Generator().manual_seed(0)
    E = cfg.n_embd
    shards, cur, size = [], {}, 0
    for name, shape in shapes.items():
        leaf = name.rsplit(".", 2)[-2]
        if "norm" in leaf or leaf.startswith("ln_"):
            t = torch.ones(shape)
        else:
            t = torch.randn(shape, generator=g) * (0.5 / math.sqrt(shape[-1] if len(shape) > 1 else E))
        cur[name] = t.to(dtype)
        size += t.numel() * cur[name].element_size()
        if shard_bytes and size > shard_bytes:
            shards.append(cur)
            cur, size = {}, 0
    shards.append(cur)
    if len(shards) == 1:
        save_file(shards[0], str(out / SINGLE_FILE), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(out / fname), metadata={"format": "pt"})
            weight_map.update({k: fname for k in shard})
        (out / INDEX_FILE).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    write_config(cfg, out, {"torch_dtype": str(dtype).replace("torch.", "")})
    write_tokenizer(out, family)


def write_tokenizer(out: Path, family: str) -> None:
    """A word-level tokenizer over the benchmark's words (one token per word), with the family's BOS."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    bos = "<|begin_of_text|>" if family == "retrofit" else "<|endoftext|>"
    words = [bos, "[UNK]"] + sorted(set((QUESTION + " " + " ".join(OPTIONS) + " Question : Answer A B C D ) ?")
                                        .split()))
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([bos])
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({"bos_token": bos, "eos_token": bos}))


def peak_rss() -> int:
    """VmHWM: this process's own peak (ru_maxrss would include the parent's peak, kept across exec)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(family: str, d: Path, repeats: int) -> dict:
    """In this (fresh) process: load, then trace vs plain forward."""
    steps = REAL[family][3]
    base_peak, base_rss = peak_rss(), current_rss()
    t0 = time.perf_counter()
    bundle = load_bundle(str(d))
    t_load = time.perf_counter() - t0
    load_peak = peak_rss()
    disk = sum(f.stat().st_size for f in d.glob("*.safetensors"))
    in_mem = sum(p.numel() * p.element_size() for p in bundle.model.parameters())
    item = Item(QUESTION, OPTIONS, 1)
    prompt = bundle.template.render(item.question, item.options)
    ids = torch.tensor([bundle.tokenizer.encode(prompt, add_special_tokens=False)])
    trace_items(bundle, [item], 1, seeds=0)  # warm-up
    t_trace, t_plain = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        (tr,) = trace_items(bundle, [item], steps, seeds=0)
        t_trace.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        list(bundle.model.iterate_steps(ids, steps, seed=0, readout_every_step=False))
        t_plain.append(time.perf_counter() - t0)
    return {"family": family, "tokens": int(ids.shape[1]), "steps": steps, "load_s": t_load,
            "disk_bytes": disk, "model_bytes": in_mem, "baseline_rss": base_rss, "baseline_peak": base_peak,
            "load_peak_rss": load_peak, "peak_minus_baseline": load_peak - base_rss,
            "trace_s": min(t_trace), "plain_s": min(t_plain), "trace_all": t_trace, "plain_all": t_plain,
            "threads": torch.get_num_threads(), "parameters": bundle.model.num_parameters()}


def report(r: dict) -> str:
    gb = 1e9
    return (f"{r['family']}: {r['parameters'] / 1e9:.3f} B params, checkpoint {r['disk_bytes'] / gb:.2f} GB on disk, "
            f"model {r['model_bytes'] / gb:.2f} GB in float32; load {r['load_s']:.1f} s, peak RSS "
            f"{r['load_peak_rss'] / gb:.2f} GB ({r['peak_minus_baseline'] / gb:.2f} GB above the "
            f"{r['baseline_rss'] / gb:.2f} GB after imports) = {r['peak_minus_baseline'] / r['model_bytes']:.2f} x "
            f"the model, {r['peak_minus_baseline'] / r['disk_bytes']:.2f} x the checkpoint | {r['tokens']}-token "
            f"question, {r['steps']} steps, {r['threads']} thread(s): per-step trace {r['trace_s']:.1f} s vs plain "
            f"{r['steps']}-step forward {r['plain_s']:.1f} s: ratio {r['trace_s'] / r['plain_s']:.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/looplens-real")
    ap.add_argument("--families", default="ouro,retrofit")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # internal: run one measurement
    ap.add_argument("--small", action="store_true", help="smoke test: the same code on small configs")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.small or os.environ.get("LOOPLENS_BENCH_SMALL"):
        os.environ["LOOPLENS_BENCH_SMALL"] = "1"
        for fam, (cfg, dt, shard, k) in list(REAL.items()):
            small = (dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                          head_dim=64, intermediate_size=512) if fam == "ouro" else
                     dict(n_embd=256, n_heads=8, num_key_value_heads=2, intermediate_size=512))
            REAL[fam] = (replace(cfg, **small), dt, shard and 2**21, k)
    if a.measure:
        print(json.dumps(measure(a.measure, Path(a.dir) / a.measure, a.repeats)))
        return
    for family in a.families.split(","):
        d = Path(a.dir) / family
        if not (d / "config.json").is_file():
            t0 = time.perf_counter()
            write_checkpoint(family, d)
            print(f"wrote {d} in {time.perf_counter() - t0:.0f} s", flush=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
        r = subprocess.run([sys.executable, __file__, "--dir", a.dir, "--measure", family, "--threads",
                            str(a.threads), "--repeats", str(a.repeats)], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            print(f"{family}: failed\n{r.stderr[-3000:]}")
            continue
        res = json.loads(r.stdout.strip().splitlines()[-1])
        print(report(res), flush=True)
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
