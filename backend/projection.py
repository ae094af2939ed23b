"""2-D projections of latent-state paths: PCA (instant, deterministic) and UMAP (on request, warmed up off-thread).

Every path is projected in **one basis**: the projection is fitted on all paths' states stacked, so several seeds
or variants are comparable in one plot.  UMAP's first fit in a process compiles numba code (~13 s here), so
:func:`start_umap_warmup` runs a tiny fit in a daemon thread at start-up and :func:`umap_status` reports it;
callers show PCA (and the status) until it is ``"ready"``.
"""
from __future__ import annotations

import threading
import time
from typing import List, Optional, Sequence, Tuple

import numpy as np
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits

from .errors import UsageError

_warm_lock = threading.Lock()
_warm_state = {"status": "not started", "error": None, "seconds": None}
_fit_lock = threading.Lock()


def _one_blas_thread():
    return threadpool_limits(limits=1)


def _stack(paths: Sequence[np.ndarray]) -> Tuple[np.ndarray, List[int]]:
    arrs = [np.asarray(p, dtype=np.float32) for p in paths]
    if not arrs or any(a.ndim != 2 for a in arrs):
        raise UsageError("projection needs one or more [steps, dim] arrays")
    dims = {a.shape[1] for a in arrs}
    if len(dims) != 1 or 0 in dims:
        raise UsageError("all paths must have the same, non-zero state size (hidden states were not recorded?)")
    return np.concatenate(arrs), [len(a) for a in arrs]


def _split(xy: np.ndarray, lengths: List[int]) -> List[np.ndarray]:
    out, s = [], 0
    for n in lengths:
        out.append(xy[s:s + n])
        s += n
    return out


def pca_paths(paths: Sequence[np.ndarray]) -> Tuple[List[np.ndarray], np.ndarray]:
    """PCA to 2-D fitted on all paths together: (list of [steps, 2], explained variance ratio [2])."""
    X, lengths = _stack(paths)
    if len(X) < 2:
        raise UsageError("PCA needs at least 2 states")
    n_comp = min(2, X.shape[0], X.shape[1])
    pca = PCA(n_components=n_comp, svd_solver="full")
    with _one_blas_thread():  # small matrices: BLAS threads only contend (400 ms vs 1 ms on a busy 2-core box)
        xy = pca.fit_transform(X)
    ratio = pca.explained_variance_ratio_
    if n_comp < 2:
        xy = np.concatenate([xy, np.zeros((len(xy), 2 - n_comp))], axis=1)
        ratio = np.concatenate([ratio, np.zeros(2 - n_comp)])
    # Fix the sign so the same data always gives the same picture (start on the left).
    for k in range(2):
        if xy[0, k] > 0:
            xy[:, k] *= -1
    return _split(xy, lengths), ratio


def umap_paths(paths: Sequence[np.ndarray], n_neighbors: int = 15, random_state: int = 0,
               metric: str = "cosine") -> List[np.ndarray]:
    """UMAP to 2-D fitted on all paths together (reproducible with ``random_state``)."""
    import umap

    X, lengths = _stack(paths)
    if len(X) < 4:
        raise UsageError("UMAP needs at least 4 states; use PCA")
    nn = max(2, min(n_neighbors, len(X) - 1))
    with _fit_lock:
        xy = umap.UMAP(n_components=2, n_neighbors=nn, metric=metric, random_state=random_state, n_jobs=1,
                       init="random" if len(X) < 10 else "spectral").fit_transform(X)
    return _split(np.asarray(xy), lengths)


def _warmup() -> None:
    t0 = time.perf_counter()
    try:
        rng = np.random.default_rng(0)
        umap_paths([rng.normal(size=(40, 16)).astype(np.float32)], n_neighbors=5)
        with _warm_lock:
            _warm_state.update(status="ready", seconds=time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - reported through umap_status()
        with _warm_lock:
            _warm_state.update(status="failed", error=f"{type(exc).__name__}: {exc}")


def start_umap_warmup() -> str:
    """Start compiling UMAP in a background daemon thread (idempotent); returns the current status."""
    with _warm_lock:
        if _warm_state["status"] == "not started":
            _warm_state["status"] = "warming up"
            threading.Thread(target=_warmup, name="umap-warmup", daemon=True).start()
        return _warm_state["status"]


def umap_status() -> dict:
    """``{"status": "not started" | "warming up" | "ready" | "failed", "error": str|None, "seconds": float|None}``"""
    with _warm_lock:
        return dict(_warm_state)


def wait_for_umap(timeout: Optional[float] = None) -> bool:
    t0 = time.perf_counter()
    while umap_status()["status"] == "warming up":
        if timeout is not None and time.perf_counter() - t0 > timeout:
            return False
        time.sleep(0.1)
    return umap_status()["status"] == "ready"
