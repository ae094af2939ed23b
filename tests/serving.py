"""A LoopLens server in a child process for the browser tests and the benchmarks that drive a browser
(benchmarks/dashboard_speed.py, benchmarks/load_test.py): a free port, the launch commands, waiting for the health
endpoint, and stopping it.  Not a test module (no ``test_`` prefix)."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def streamlit_command(port: int) -> List[str]:
    """``streamlit run app.py`` on ``port``, bound to localhost, headless, no usage statistics."""
    return [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
            str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]


def app_command(port: int, model: Optional[str] = None) -> List[str]:
    """``python -m backend app`` (the warm-started server) on ``port``, bound to localhost."""
    return ([sys.executable, "-m", "backend", "app"] + (["--model", str(model)] if model else [])
            + ["--port", str(port), "--address", "127.0.0.1"])


@contextlib.contextmanager
def server_process(cmd: Sequence[str], port: int, log_path: Path, *, cwd: Path = REPO, env=None,
                   timeout: float = 90, poll: float = 0.3) -> Iterator[Tuple[str, float, subprocess.Popen]]:
    """Start ``cmd`` (a server listening on ``port``) with its output in ``log_path``; once its health endpoint
    answers, yield (url, seconds from launch to healthy, process); stop it afterwards.  A server that exits or
    stays unhealthy for ``timeout`` seconds raises RuntimeError quoting its log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=log, stderr=log)
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the server exited with {proc.returncode}:\n{log_path.read_text()}")
                if time.perf_counter() - t0 > timeout:
                    raise RuntimeError(f"the server did not become healthy in {timeout:g} s:\n{log_path.read_text()}")
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                        break
                except OSError:
                    time.sleep(poll)
            yield url, time.perf_counter() - t0, proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
