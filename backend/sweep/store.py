"""The results directory of a sweep: its one Arrow schema, writing / checking / scanning parts, the manifest,
and locks.  Reading results back is :mod:`.load`.

Layout of ``DIR`` (``pandas.read_parquet(DIR)`` reads the parts as one table, one row per instance; pyarrow skips
every name starting with ``_`` or ``.``)::

    _manifest.json                  the parameters that fix the numbers, the package versions (written once)
    _runs/<time>-<shard>.json       one record per invocation (best effort: skipped on a read-only directory)
    _similarity.json                stem-option cosines and distractor ranks of the swept items (if computed)
    _locks/shard-<i>-of-<n>.lock    held by the sweep running that shard; _locks/write.lock: held while writing
    _damaged/                       parts found damaged, moved aside (never deleted) before recomputing them
    part-<first>-<writer>.parquet   finished instances (``part-<first>.parquet`` in directories of earlier runs)
    _hidden/<part stem>.npy         float16 [rows, steps, E]: last-position latent state per step, same row order

Every row is keyed by its instance ``(item_id, variant, permutation, seed)``.  Parts are written while holding
``write.lock``: the writer first reads the keys of parts that appeared since it last looked and drops rows
already on disk, then writes hidden states and the part atomically (temporary name, fsync, ``os.replace``).
So no instance is ever stored twice, whichever sweeps write to the directory at once; and a temporary file
present while one holds ``write.lock`` can only be a leftover of a killed writer, and is removed.
"""
from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import hashlib
import json
import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import LoopLensError, UsageError

SCHEMA = "looplens.sweep/1"  # parts and manifest; a directory of another version is refused by name
MANIFEST = "_manifest.json"
HIDDEN_DIR = "_hidden"
RUNS_DIR = "_runs"
LOCK_DIR = "_locks"
DAMAGED_DIR = "_damaged"
SIMILARITY_FILE = "_similarity.json"
PART_PREFIX = "part-"
KEY_COLUMNS = ("item_id", "variant", "permutation", "seed")
MAX_MANIFEST_BYTES = 16 * 2**20

_F32L, _I8L = pa.list_(pa.float32()), pa.list_(pa.int8())
# The one declaration of a results row (one instance).  Writers build tables with it; readers rely on it.
ROW_SCHEMA = pa.schema([
    ("item_id", pa.string()), ("domain", pa.string()), ("variant", pa.string()), ("permutation", pa.int32()),
    ("seed", pa.int32()), ("init_seed", pa.int64()), ("instance", pa.int64()), ("model", pa.string()),
    ("checkpoint_hash", pa.string()), ("steps", pa.int32()), ("template", pa.string()),
    ("template_hash", pa.string()), ("init_scale", pa.float64()), ("question", pa.string()),
    ("n_options", pa.int8()), ("options", pa.list_(pa.string())), ("order", _I8L), ("correct", pa.int8()),
    ("correct_original", pa.int8()), ("belief", pa.list_(_F32L)), ("raw_mass", pa.list_(_F32L)),
    ("letter_mass", _F32L), ("entropy", _F32L), ("kl", _F32L), ("argmax", _I8L), ("final_answer", pa.int8()),
    ("final_answer_original", pa.int8()), ("final_option", pa.string()), ("is_correct", pa.bool_()),
    ("exploration_end", pa.int32()), ("converged", pa.bool_()), ("backtracked", pa.bool_()),
    ("n_backtracks", pa.int32()), ("abandoned", _I8L), ("abandoned_original", _I8L),
    ("abandoned_options", pa.list_(pa.string())), ("destination", pa.int8()), ("frontrunner", pa.int8()),
    ("n_commitments", pa.int32()), ("final_entropy", pa.float64()), ("final_entropy_norm", pa.float64()),
    ("mean_entropy", pa.float64()), ("final_letter_mass", pa.float64()), ("final_belief_max", pa.float64()),
    # The model's own exit gate (Ouro): P(exit at step t); null for families without one.
    ("exit_prob", _F32L),
    # An intervention sweep (``sweep --intervene``): the row's belief and metrics above are the intervened run's;
    # these columns name the intervention and compare the run with its baseline (same item, seed, steps).  All
    # null in a sweep without intervention (and absent from parts written before they existed).
    ("intervention", pa.string()), ("iv_kind", pa.string()), ("iv_at", pa.int32()), ("iv_sigma", pa.float64()),
    ("iv_positions", pa.string()), ("baseline_argmax", _I8L), ("baseline_final_answer", pa.int8()),
    ("baseline_is_correct", pa.bool_()), ("baseline_backtracked", pa.bool_()),
    ("baseline_exploration_end", pa.int32()), ("final_changed", pa.bool_()), ("diverged_at", pa.int32()),
    ("rejoin_step", pa.int32()), ("steps_to_rejoin", pa.int32()), ("new_backtracks", pa.int32()),
    ("lost_backtracks", pa.int32()), ("max_tv", pa.float64()), ("final_tv", pa.float64()),
])
INTERVENTION_FIELDS = tuple(ROW_SCHEMA.names[ROW_SCHEMA.names.index("intervention"):])
# Columns added after the first parts were written: a part without them loads with them null (load_results).
OPTIONAL_FIELDS = ("exit_prob",) + INTERVENTION_FIELDS
ROW_FIELDS = tuple(ROW_SCHEMA.names)


# ---------------------------------------------------------------------------------------------- the directory
def damaged(path: Path, what: str) -> LoopLensError:
    return LoopLensError(f"{path} {what}: the results directory is damaged (move that away, or use a new --out)")


def check_layout(out: Path) -> None:
    """Refuse a directory whose bookkeeping names are taken by the wrong kind of entry."""
    for name in (HIDDEN_DIR, RUNS_DIR, LOCK_DIR, DAMAGED_DIR):
        p = out / name
        if p.exists() and not p.is_dir():
            raise damaged(p, "should be a directory but is a file")
    for name in (MANIFEST, SIMILARITY_FILE):
        p = out / name
        if p.exists() and not p.is_file():
            raise damaged(p, "should be a file but is not")


def part_paths(out: Path) -> List[Path]:
    """The ``part-*.parquet`` entries, sorted; one that is not a file is refused with its name."""
    ps = sorted(Path(out).glob(f"{PART_PREFIX}*.parquet"))
    for p in ps:
        if not p.is_file():
            raise damaged(p, "is not a file (a part should be a Parquet file)")
    return ps


list_parts = part_paths


def hidden_path(part: Path) -> Path:
    return part.parent / HIDDEN_DIR / (part.name[: -len(".parquet")] + ".npy")


def is_results_dir(out: Path) -> bool:
    return (Path(out) / MANIFEST).is_file()


def check_out(out: Path) -> None:
    """``--out`` must be a new or empty directory, or a LoopLens results directory (never someone else's)."""
    if str(out).strip() == "":
        raise UsageError("--out is empty: give a results directory")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    if out.is_dir() and not is_results_dir(out):
        try:
            entries = [e.name for e in out.iterdir()]
        except OSError as exc:
            raise UsageError(f"--out {out} cannot be read ({exc.strerror or exc})") from None
        if entries:
            raise UsageError(f"--out {out} is not empty and is not a LoopLens results directory (no {MANIFEST}): "
                             "give a new or empty directory")


# ---------------------------------------------------------------------------------------------- locks
class Lock:
    """An advisory ``flock`` on ``_locks/<name>.lock`` (released when the process dies, even by SIGKILL)."""

    def __init__(self, out: Path, name: str):
        self.path = out / LOCK_DIR / f"{name}.lock"
        self.fd: Optional[int] = None

    def acquire(self, wait: bool) -> bool:
        self.path.parent.mkdir(exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self.fd = fd
        return True

    def holder(self) -> str:
        try:
            d = json.loads(self.path.read_text())
            return f"pid {int(d['pid'])} on {str(d['host'])[:64]}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        self.acquire(wait=True)
        return self

    def __exit__(self, *exc):
        self.release()


def shard_lock(out: Path, shard: Tuple[int, int]) -> Lock:
    """Hold the lock of ``shard``, or refuse with one line naming who holds it."""
    lock = Lock(out, f"shard-{shard[0]}-of-{shard[1]}")
    if not lock.acquire(wait=False):
        raise LoopLensError(f"another sweep ({lock.holder()}) is running shard {shard[0]}/{shard[1]} in {out}: "
                            "wait for it to finish, or run another --shard")
    return lock


def write_lock(out: Path) -> Lock:
    return Lock(out, "write")


def remove_orphan_temporaries(out: Path) -> int:
    """Remove temporary files of killed writers; call only while holding :func:`write_lock`."""
    n = 0
    for d in (out, out / HIDDEN_DIR):
        for tmp in d.glob(f".{PART_PREFIX}*.tmp") if d.is_dir() else ():
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                n += 1
    return n


# ---------------------------------------------------------------------------------------------- writing
def new_writer_id() -> str:
    return secrets.token_hex(4)


def part_name(first: int, writer: str) -> str:
    return f"{PART_PREFIX}{first:08d}-{writer}.parquet"


def fsync_path(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def file_sha256(path, chunk: int = 2**20) -> str:
    """SHA-256 of a file, read in chunks (benchmark fingerprints, hidden-state checksums)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for b in iter(lambda: fh.read(chunk), b""):
            h.update(b)
    return h.hexdigest()


def write_part(out: Path, name: str, table: pa.Table, hidden: Optional[np.ndarray], fp: str) -> Path:
    """Write one part atomically: hidden states first, then the part (whose footer names and checksums them).
    Call while holding :func:`write_lock`.  On failure (disk full) nothing partial is left behind."""
    meta = {"looplens.schema": SCHEMA, "looplens.fingerprint": fp, "looplens.rows": str(table.num_rows)}
    final = out / name
    tmp = out / f".{name}.tmp"
    hpath = hidden_path(final)
    htmp = hpath.parent / f".{hpath.name}.tmp"
    try:
        if hidden is not None:
            hpath.parent.mkdir(exist_ok=True)
            with open(htmp, "wb") as fh:
                np.save(fh, hidden)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(htmp, hpath)
            meta.update({"looplens.hidden": hpath.name, "looplens.hidden_bytes": str(hpath.stat().st_size),
                         "looplens.hidden_sha256": file_sha256(hpath)})
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
        pq.write_table(table, tmp, compression="zstd", write_page_checksum=True)
        fsync_path(tmp)
        os.replace(tmp, final)
    except BaseException:
        for p in (tmp, htmp):
            p.unlink(missing_ok=True)
        if not final.exists():
            hpath.unlink(missing_ok=True)
        raise
    return final


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def disk_error(exc: OSError, path: Path) -> LoopLensError:
    """One line for an OSError while writing results."""
    if exc.errno == errno.ENOSPC:
        return LoopLensError(f"the disk is full while writing {path}: what was written before is kept; free "
                             "space and rerun the same command to continue")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return LoopLensError(f"cannot write {path} ({exc.strerror}): the results directory is read-only; "
                             "give a writable --out")
    return LoopLensError(f"cannot write {path}: {exc.strerror or exc}")


# ---------------------------------------------------------------------------------------------- checking, scanning
@dataclass
class PartCheck:
    path: Path
    ok: bool
    reason: str = ""
    keys: List[tuple] = field(default_factory=list)
    rows: int = 0
    ours: bool = True  # False: no LoopLens footer (not written by a sweep: never touched)


def check_part(path: Path, fp: Optional[str], verify_hidden: bool = True) -> PartCheck:
    """Read a part fully (page checksums verified) and check its row count, sweep and hidden file."""
    try:
        table = pq.read_table(path, page_checksum_verification=True)
    except Exception as exc:  # truncated, garbage, bad checksum: all mean "recompute"
        return PartCheck(path, False, f"unreadable ({str(exc).splitlines()[0][:120]})")
    meta = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in (table.schema.metadata or {}).items()}
    if meta.get("looplens.schema") != SCHEMA:
        return PartCheck(path, False, "not a LoopLens sweep part", ours=False)
    if fp is not None and meta.get("looplens.fingerprint") != fp:
        return PartCheck(path, False, "written by a sweep with different parameters")
    try:
        nrows = int(meta.get("looplens.rows", "-1"))
    except ValueError:
        nrows = -1
    if nrows != table.num_rows:
        return PartCheck(path, False, f"has {table.num_rows} rows, its footer says {nrows}")
    missing = [c for c in KEY_COLUMNS if c not in table.column_names]
    if missing:
        return PartCheck(path, False, f"lacks column(s) {', '.join(missing)}")
    hname = meta.get("looplens.hidden")
    if hname and verify_hidden:
        hpath = path.parent / HIDDEN_DIR / hname
        if not hpath.is_file():
            return PartCheck(path, False, f"its hidden-state file {hname} is missing")
        if str(hpath.stat().st_size) != meta.get("looplens.hidden_bytes"):
            return PartCheck(path, False, f"its hidden-state file {hname} has the wrong size")
        if file_sha256(hpath) != meta.get("looplens.hidden_sha256"):
            return PartCheck(path, False, f"its hidden-state file {hname} is corrupt (checksum)")
    cols = [table.column(c).to_pylist() for c in KEY_COLUMNS]
    return PartCheck(path, True, "", list(zip(*cols)), table.num_rows)


@dataclass
class ScanResult:
    finished: Dict[tuple, str]  # key -> part file name
    bad: List[PartCheck]
    duplicates: int
    parts: int
    seen: Set[str] = field(default_factory=set)  # part names read (valid or not)


def scan(out: Path, fp: Optional[str], verify_hidden: bool = True) -> ScanResult:
    res = ScanResult({}, [], 0, 0)
    for p in part_paths(out):
        res.parts += 1
        res.seen.add(p.name)
        c = check_part(p, fp, verify_hidden)
        if not c.ok:
            res.bad.append(c)
            continue
        for k in c.keys:
            if k in res.finished:
                res.duplicates += 1
            else:
                res.finished[k] = p.name
    return res


def refresh(out: Path, sc: ScanResult, fp: Optional[str]) -> None:
    """Add the keys of parts that appeared since ``sc`` was made (other writers); call under the write lock."""
    new = [n for n in os.listdir(out) if n.startswith(PART_PREFIX) and n.endswith(".parquet") and n not in sc.seen]
    for p in sorted(out / n for n in new):  # only names not read before: no stat per known part
        if not p.is_file():
            raise damaged(p, "is not a file (a part should be a Parquet file)")
        sc.seen.add(p.name)
        sc.parts += 1
        c = check_part(p, fp, verify_hidden=False)
        if c.ok:
            for k in c.keys:
                sc.finished.setdefault(k, p.name)


def set_aside(out: Path, c: PartCheck) -> Path:
    """Move a damaged part (and its hidden file) to ``_damaged/`` instead of deleting it."""
    d = out / DAMAGED_DIR
    d.mkdir(exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    dest = d / f"{stamp}-{c.path.name}"
    os.replace(c.path, dest)
    h = hidden_path(c.path)
    if h.is_file():
        os.replace(h, d / f"{stamp}-{h.name}")
    return dest


# ---------------------------------------------------------------------------------------------- the manifest
def read_manifest(out) -> Optional[dict]:
    """The manifest (None when the directory has none); a damaged or foreign one is refused in one line."""
    p = Path(out) / MANIFEST
    if not p.exists():
        return None
    if not p.is_file():
        raise damaged(p, "is not a file")
    try:
        if p.stat().st_size > MAX_MANIFEST_BYTES:
            raise damaged(p, "is too large to be a manifest")
        man = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise damaged(p, "is not valid JSON") from None
    except OSError as exc:
        raise LoopLensError(f"cannot read {p}: {exc.strerror or exc}") from None
    if not isinstance(man, dict):
        raise damaged(p, f"holds a JSON {_json_type(man)}, not a manifest object")
    schema = man.get("schema")
    if schema != SCHEMA:
        raise LoopLensError(f"{p.parent} holds results of format {str(schema)[:40]!r}; this LoopLens reads "
                            f"{SCHEMA!r}: use a new --out (or the LoopLens version that wrote it)")
    for k, typ in (("fingerprint", str), ("identity", dict), ("parameters", dict)):
        if k in man and not isinstance(man[k], typ):
            raise damaged(p, f"has a wrong {k!r} field (a JSON {_json_type(man[k])}, expected "
                             f"{_json_type(typ())})")
    if not isinstance(man.get("fingerprint"), str):
        raise damaged(p, "has no fingerprint")
    return man


def _json_type(v) -> str:
    return {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(v), type(v).__name__)


def create_manifest(out: Path, man: dict) -> dict:
    """Write the manifest unless one exists (first writer wins); returns the one on disk."""
    path = out / MANIFEST
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(man, indent=1, default=str) + "\n", encoding="utf-8")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    except OSError:
        if not path.exists():
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return read_manifest(out)
