"""Engine speed, measured in one run (issue: per-step readout, FLOP/s, batching).

Run by hand (not in CI):  python benchmarks/engine_bench.py [--repeats 3] [--threads N]

Mid-size random Huginn-format config: E=512, 8 heads, MLP width 1536, 2/4/2 layers, vocab 4096, 128 tokens,
K=30 steps, float32, CPU.  Prints
 (a) full per-step trace time / plain K-step forward (read out at the last step only)   target <= 1.5
 (b) achieved FLOP/s of the trace / this machine's float32 2048x2048 matmul rate          target >= 0.3
 (c) 25 answer-order permutations traced as one padded batch vs one by one               target >= 3x
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backend.models.checkpoint import init_weights  # noqa: E402
from backend.models.huginn import HuginnConfig, HuginnModel  # noqa: E402

E, H, I, V, S, K = 512, 8, 1536, 4096, 128, 30
CFG = HuginnConfig(n_embd=E, n_heads=H, intermediate_size=I, vocab_size=V, block_size=1024,
                   n_layers_in_prelude=2, n_layers_in_recurrent_block=4, n_layers_in_coda=2,
                   init_std=(2 / (5 * E)) ** 0.5)


def best_of(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def block_flops(tokens: int, seq: int) -> float:
    """Matmul FLOPs of one sandwich block over `tokens` query positions in sequences of length `seq`."""
    lin = 2 * tokens * (4 * E * E + 3 * E * I)  # Wqkv (3E^2) + proj (E^2) + fc (2EI) + mlp proj (EI)
    attn = 2 * 2 * E * tokens * (seq + 1) / 2  # QK^T and AV, causal
    return lin + attn


def trace_flops_nominal(batch: int) -> float:
    """Prelude + K x (adapter + core) + K coda readouts over all positions + K last-position LM heads."""
    per_seq = (2 * block_flops(S, S) + K * (2 * S * 2 * E * E + 4 * block_flops(S, S))
               + K * (2 * block_flops(S, S) + 2 * E * V))
    return batch * per_seq


def trace_flops_executed(batch: int) -> float:
    """What the implementation computes: the last coda layer only at the last query position."""
    per_seq = (2 * block_flops(S, S) + K * (2 * S * 2 * E * E + 4 * block_flops(S, S))
               + K * (block_flops(S, S) + 2 * S * 3 * E * E + block_flops(1, S) + 2 * E * V))
    return batch * per_seq


def matmul_rate(n=2048, repeats=5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    best, _ = best_of(lambda: a @ b, repeats)
    return 2 * n ** 3 / best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = init_weights(HuginnModel(CFG), seed=0).eval()
    ids = torch.randint(0, V, (1, S))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, config E={E} H={H} I={I} V={V} "
          f"layers 2/4/2, {S} tokens, K={K}, float32, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params")

    rate = matmul_rate()
    print(f"float32 2048x2048 matmul: {rate / 1e9:.1f} GFLOP/s")

    t_trace, m_trace = best_of(lambda: model.step_logprobs(ids, K, seed=0), a.repeats)
    t_plain, m_plain = best_of(lambda: list(model.iterate_steps(ids, K, seed=0, readout_every_step=False)), a.repeats)
    print(f"(a) per-step trace {t_trace * 1e3:.0f} ms (median {m_trace * 1e3:.0f}), plain {K}-step forward "
          f"{t_plain * 1e3:.0f} ms (median {m_plain * 1e3:.0f}): ratio {t_trace / t_plain:.2f}  (target <= 1.5)")

    nominal, executed = trace_flops_nominal(1), trace_flops_executed(1)
    print(f"(b) trace FLOPs nominal {nominal / 1e9:.1f} G (coda over all positions every step), executed "
          f"{executed / 1e9:.1f} G; achieved {nominal / t_trace / 1e9:.1f} GFLOP/s nominal = "
          f"{nominal / t_trace / rate:.2f} of matmul rate, {executed / t_trace / rate:.2f} counting executed FLOPs "
          f"(target >= 0.3)")

    batching(model, ids, rate, a.repeats, "mid-size config", nominal=trace_flops_nominal(25))
    # The shipped default model's scale: small states and short prompts, where per-step overheads dominate.
    small = init_weights(HuginnModel(SMALL), seed=0).eval()
    batching(small, torch.randint(0, SMALL.vocab_size, (1, 48)), rate, a.repeats, "small config (E=128, 1/1/1 "
             "layers, 48 tokens, like the shipped default model)")


SMALL = HuginnConfig(n_embd=128, n_heads=4, intermediate_size=384, vocab_size=128, block_size=256,
                     n_layers_in_prelude=1, n_layers_in_recurrent_block=1, n_layers_in_coda=1,
                     init_std=(2 / (5 * 128)) ** 0.5)


def batching(model, ids, rate, repeats, label, nominal=None):
    """(c) 25 answer-order permutations: one padded batch vs one by one (same token count per instance)."""
    P, L = 25, ids.shape[1]
    batch = torch.stack([ids[0][torch.randperm(L, generator=torch.Generator().manual_seed(p))] for p in range(P)])
    seeds = list(range(P))
    t_batch, _ = best_of(lambda: model.step_logprobs(batch, K, seed=seeds), max(1, repeats - 1))

    def one_by_one():
        for p in range(P):
            model.step_logprobs(batch[p:p + 1], K, seed=seeds[p])

    t_single, _ = best_of(one_by_one, 1)
    extra = f", {nominal / t_batch / rate:.2f} of matmul rate (nominal)" if nominal else ""
    print(f"(c) {label}: {P} permutations batched {t_batch:.2f} s vs one by one {t_single:.2f} s: "
          f"{t_single / t_batch:.2f}x faster (target >= 3x); batched {P / t_batch:.1f} instances/s{extra}")


if __name__ == "__main__":
    main()
