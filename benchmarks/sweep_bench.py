"""Sweep throughput: instances/s, achieved fraction of this machine's matmul FLOP/s, and the sweep's overhead.

Run by hand (not in CI):

    python benchmarks/sweep_bench.py --results DIR [--threads N]       # numbers of a finished sweep in DIR
    python benchmarks/sweep_bench.py --model M --benchmark F --limit 10  # run a small sweep into a temp dir

* instances/s and overhead come from the sweep's own run records (``DIR/_runs/*.json``): wall time of the
  chunk loop, time inside ``trace_items`` (the model work), and the rest (row building, Parquet and hidden-state
  writes, bookkeeping) = overhead.
* FLOPs per instance are *counted*, not estimated: one representative chunk of the sweep is re-run under
  ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, attention), divided by its instances.
* The machine's matmul rate is the best of several float32 2048x2048 matmuls at the same thread count (the
  same yardstick as ``engine_bench.py``).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def matmul_flops_per_s(threads: int, n: int = 2048, repeats: int = 10) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def counted_flops_per_instance(results: Path, n: int = 64) -> tuple:
    """Re-run the first ``n`` instances of the sweep under a FLOP counter: (FLOPs per instance, instances)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from backend.sweep import ChunkRunner, SweepSpec, count_instances, iter_instances, load_items, read_manifest

    man = read_manifest(results)
    spec = SweepSpec.from_dict({**man["parameters"], "out": str(results)})
    spec.device = "cpu"
    runner = ChunkRunner(spec)
    items = load_items(spec)
    # A spread of instances (every variant and permutation), like a real chunk; enumerated lazily.
    step = max(1, count_instances(items, spec) // n)
    chunk = list(itertools.islice(iter_instances(items, spec, (0, step)), n))
    with FlopCounterMode(display=False) as fc:
        runner.compute(chunk)
    return fc.get_total_flops() / len(chunk), len(chunk)


def run_records(results: Path) -> dict:
    recs = [json.loads(p.read_text()) for p in sorted((results / "_runs").glob("*.json"))]
    recs = [r for r in recs if r["summary"]["computed"] > 0]
    if not recs:
        raise SystemExit(f"{results}: no run records with computed instances")
    s = {k: sum(r["summary"][k] for r in recs) for k in ("computed", "seconds", "trace_seconds",
                                                          "compute_seconds", "write_seconds", "padded_tokens",
                                                          "real_tokens")}
    s["runs"] = len(recs)
    s["threads"] = recs[-1]["parameters"].get("threads")
    s["engine"] = ",".join(sorted({r["engine"] for r in recs}))
    return s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", help="a finished sweep directory")
    ap.add_argument("--model")
    ap.add_argument("--benchmark")
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--permutations", type=int, default=25)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None, help="threads for the matmul yardstick (default: the "
                    "sweep's, else torch's)")
    ap.add_argument("--flop-instances", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    import torch

    if a.results:
        results = Path(a.results)
    else:
        if not (a.model and a.benchmark):
            ap.error("give --results DIR, or --model and --benchmark to run a small sweep")
        from backend.sweep import SweepSpec, run_sweep

        results = Path(tempfile.mkdtemp(prefix="looplens-sweep-bench-"))
        run_sweep(SweepSpec(model=a.model, benchmark=a.benchmark, out=str(results), limit=a.limit,
                            permutations=a.permutations, steps=a.steps, threads=a.threads,
                            embedding_model=None), progress=True)
    s = run_records(results)
    threads = a.threads or s["threads"] or torch.get_num_threads()
    torch.set_num_threads(threads)
    flops_inst, n_counted = counted_flops_per_instance(results, a.flop_instances)
    peak = matmul_flops_per_s(threads)
    ips = s["computed"] / s["seconds"]
    out = {
        "results": str(results), "engine": s["engine"], "runs": s["runs"], "threads": threads,
        "instances": s["computed"], "seconds": s["seconds"], "instances_per_s": ips,
        "trace_seconds": s["trace_seconds"], "write_seconds": s["write_seconds"],
        "overhead": 1 - s["trace_seconds"] / s["seconds"],
        "padding": 1 - s["real_tokens"] / s["padded_tokens"] if s["padded_tokens"] else None,
        "flops_per_instance": flops_inst, "flop_instances_counted": n_counted,
        "achieved_flops_per_s": flops_inst * ips, "matmul_flops_per_s": peak,
        "flop_fraction": flops_inst * ips / peak,
        "flop_fraction_inside_trace": flops_inst * s["computed"] / s["trace_seconds"] / peak,
    }
    if a.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"sweep {results}: {out['instances']} instances in {out['seconds']:.1f} s ({out['engine']}, "
              f"{threads} thread(s)) = {ips:.2f} instances/s")
        print(f"overhead (not in trace_items): {100 * out['overhead']:.1f}%  (writes {out['write_seconds']:.1f} s)"
              + (f"; padding {100 * out['padding']:.1f}% of batch tokens" if out["padding"] is not None else ""))
        print(f"FLOPs/instance (counted) {flops_inst / 1e9:.3f} GFLOP; achieved {out['achieved_flops_per_s'] / 1e9:.2f}"
              f" GFLOP/s of {peak / 1e9:.1f} GFLOP/s matmul = {100 * out['flop_fraction']:.1f}% "
              f"({100 * out['flop_fraction_inside_trace']:.1f}% inside trace_items)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
