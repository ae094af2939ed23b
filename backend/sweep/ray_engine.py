"""The Ray engine: the same chunks, computed by Ray actors (one model per actor); imports only the runner.

The driver (the ``python -m backend sweep --engine ray`` process) plans the shard, skips finished instances,
hands chunks to actors and writes every returned chunk itself, exactly as the local engine does: the actors
need no access to the results directory or the benchmark file (items travel with the request), only to the
model checkpoint (the same path on every node: shared storage, or the same ``data/models``).

* ``--ray-address`` (or ``$RAY_ADDRESS``): join an existing cluster; the ``backend`` package is shipped to the
  workers with ``runtime_env={"py_modules": [...]}``.  Otherwise a local Ray is started for the run and shut
  down after it.
* GPU-aware: when the cluster has GPUs, each actor reserves one (``num_gpus=1``) and runs on ``cuda``; otherwise
  each actor reserves ``--threads`` CPUs (default 1) and runs torch with that many threads.

Ray is optional: ``pip install -r requirements-ray.txt``.
"""
from __future__ import annotations

import itertools
import os
import socket
from typing import Callable, Iterable, List, Optional

import torch

from ..errors import LoopLensError
from ..settings import REPO_ROOT
from .runner import ChunkRunner

INSTALL_HINT = "pip install -r requirements-ray.txt  (i.e. pip install 'ray[default]>=2.9')"


def require_ray():
    try:
        import ray  # optional dependency
    except ImportError:
        raise LoopLensError(f"--engine ray needs Ray, which is not installed: {INSTALL_HINT}; or use --engine local")
    return ray


class SweepWorker:
    """Ray actor body: loads the model once, then computes chunks."""

    def __init__(self, spec_dict: dict, item_dicts: List[dict], device: str):
        self.runner = ChunkRunner.from_dicts(spec_dict, item_dicts, device)

    def compute(self, chunk):
        return self.runner.compute_tuples(chunk)

    def info(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "threads": torch.get_num_threads(),
                "device": str(self.runner.bundle.device)}


def _init(ray, address: Optional[str], threads: int, workers: Optional[int], log) -> bool:
    """Connect to (or start) Ray; True when this call started a local instance (to shut it down after)."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        log(f"joining the Ray cluster at {address}")
        ray.init(address=address, runtime_env={"py_modules": [str(REPO_ROOT / "backend")]},
                 log_to_driver=False)
        return True
    num_cpus = max(1, (workers or max(1, (os.cpu_count() or 1) // threads)) * threads)
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    log(f"starting a local Ray with {num_cpus} CPU(s)")
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             object_store_memory=256 * 2**20,
             runtime_env={"env_vars": {"PYTHONPATH": pythonpath, "OMP_NUM_THREADS": str(threads)}})
    return True


def run_chunks(spec, chunks: Iterable[list], on_done: Callable, *, items, model_path: str,
               address: Optional[str] = None, workers: Optional[int] = None,
               log: Callable[[str], None] = print) -> None:
    """Compute ``chunks`` (an iterable, consumed lazily) on Ray actors; call ``on_done(ChunkResult)`` in the
    driver as each one finishes; ``on_done`` returning False stops handing out chunks."""
    ray = require_ray()
    from ray.exceptions import RayActorError, RayTaskError

    chunks = iter(chunks)
    first = next(chunks, None)
    if first is None:
        return
    threads = spec.threads or 1
    started = _init(ray, address, threads, workers, log)
    try:
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        cpus = int(res.get("CPU", 1))
        use_gpu = gpus > 0 and spec.device in ("auto", "cuda", None, "") or str(spec.device).startswith("cuda")
        if use_gpu and gpus == 0:
            raise LoopLensError(f"--device {spec.device} asks for a GPU but the Ray cluster has none")
        n = max(1, workers or (gpus if use_gpu else max(1, cpus // threads)))
        device = "cuda" if use_gpu else "cpu"
        opts = {"num_gpus": 1, "num_cpus": 1} if use_gpu else {"num_cpus": threads}
        d = spec.to_dict()
        d.update(model=model_path, threads=threads)
        Actor = ray.remote(**opts)(SweepWorker)
        item_dicts = [it.to_dict() for it in items]
        queue = itertools.chain([first], chunks)
        pending = {}
        actors = []

        def submit(actor) -> bool:
            c = next(queue, None)
            if c is None:
                return False
            tup = [(x.index, x.item_id, x.variant, x.permutation, x.seed, x.init_seed) for x in c]
            pending[actor.compute.remote(tup)] = actor
            return True

        for _ in range(n):
            a = Actor.remote(d, item_dicts, device)
            actors.append(a)
            if not submit(a):
                break
        log(f"ray: {len(actors)} worker(s) on {device} ({'1 GPU' if use_gpu else f'{threads} CPU thread(s)'} each)")
        go_on = True
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            actor = pending.pop(ref)
            try:
                result = ray.get(ref)
            except RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, LoopLensError):
                    raise type(cause)(str(cause)) from None
                raise LoopLensError(f"a Ray worker failed: {str(cause or exc).splitlines()[0]}") from None
            except RayActorError as exc:
                raise LoopLensError(f"a Ray worker died ({str(exc).splitlines()[0]}); rerun to resume") from None
            if on_done(result) is False:
                go_on = False
            if go_on:
                submit(actor)
        for a in actors:
            ray.kill(a)
    finally:
        if started:
            ray.shutdown()
