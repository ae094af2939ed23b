"""Load test of the app (run by hand): python benchmarks/load_test.py [--model M] [--sessions 8] [--more-runs 50]

1. Starts a fresh ``streamlit run app.py`` (nothing imported or cached yet).
2. Opens --sessions headless-Chromium sessions on Explore at the same moment, each on a different benchmark item
   (a shareable link: bench, item, steps, seed), and waits for every session's belief chart.
3. Reads each session's plotted beliefs from the browser (the chart's own data) and compares them with
   ``python -m backend trace --benchmark FILE --item ID --steps K --seed S --json`` for the same question and seed.
4. In one of the sessions, runs --more-runs new traces (a new seed each time, typed into the sidebar).
5. Reports the server's resident memory (Linux /proc: VmRSS now, VmHWM peak so far) before the sessions, after
   them, and after the extra runs.  Memory is bounded by the run store (pages/common.py: at most RUN_STORE_SIZE
   runs and FIGURE_STORE_SIZE figures, least recently used dropped first) plus one model per distinct model.

Prints a Markdown table; exits 1 if any session failed or any belief differs from the CLI's by more than 1e-6.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from serving import free_port, server_process, streamlit_command  # noqa: E402
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
JS_BELIEF = """() => {
  const el = Array.from(document.querySelectorAll('.js-plotly-plot')).find(
      e => e.layout && e.layout.title && (e.layout.title.text || '').startsWith('Belief over the options'));
  return el ? el._fullData.map(d => Array.from(d.y)) : null;  // _fullData: arrays decoded
}"""


def _mem(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) / 1024  # MiB
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="default: the first shipped model")
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--more-runs", type=int, default=50)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from backend.items import load_benchmark
    from backend.models.runtime import default_model
    from backend.uploads import benchmark_files
    from pages.common import FIGURE_STORE_SIZE, RUN_STORE_SIZE

    model = a.model or default_model()
    if not model:
        sys.exit("no model: pass --model")
    bench_path = benchmark_files(model)[0]
    items = load_benchmark(bench_path).items[: a.sessions]
    env = {**os.environ, "LOOPLENS_DEFAULT_MODEL": model}
    port = free_port()
    server = contextlib.ExitStack()  # the server process, stopped in the finally below
    peak_rss = [0.0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                peak_rss[0] = max(peak_rss[0], _mem(proc.pid)["VmRSS"])
            except (OSError, KeyError):
                pass
            time.sleep(0.1)

    rows, failures, diffs = [], [], []
    try:
        url, _, proc = server.enter_context(server_process(streamlit_command(port), port,
                                                           REPO / "benchmarks" / ".load_test_server.log", env=env,
                                                           timeout=120, poll=0.2))
        threading.Thread(target=sample, daemon=True).start()
        time.sleep(1.0)
        rows.append(("server up, no session yet", _mem(proc.pid), None))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            ctxs = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in items]
            pages = [c.new_page() for c in ctxs]
            t0 = time.perf_counter()
            for pg, it in zip(pages, items):
                q = {"bench": bench_path.name, "item": it.id, "steps": a.steps, "seed": a.seed}
                pg.goto(f"{url}/?{urlencode(q)}", wait_until="commit")
            plotted = []
            for i, pg in enumerate(pages):
                try:
                    pg.wait_for_selector(IDLE, timeout=300_000)
                    pg.wait_for_function(f"({JS_BELIEF})() !== null", timeout=300_000)
                    plotted.append(pg.evaluate(JS_BELIEF))
                    if pg.locator("[data-testid='stException'], [data-testid='stAlertContentError']").count():
                        failures.append(f"session {i}: an error on the page")
                except Exception as exc:  # noqa: BLE001
                    failures.append(f"session {i}: {type(exc).__name__}: {str(exc)[:200]}")
                    plotted.append(None)
            t_all = time.perf_counter() - t0
            rows.append((f"{len(items)} concurrent sessions done ({t_all:.1f} s to the last chart)",
                         _mem(proc.pid), peak_rss[0]))
            # more runs in one session: a new seed each time, typed into the sidebar
            pg = pages[0]
            box = pg.locator("input[aria-label='Seed of the initial state']")
            t0 = time.perf_counter()
            for k in range(1, a.more_runs + 1):
                seed = a.seed + 1000 + k
                box.fill(str(seed))
                box.press("Enter")
                pg.wait_for_function(f"new URLSearchParams(location.search).get('seed') === '{seed}'",
                                     timeout=300_000)
                pg.wait_for_selector(IDLE, timeout=300_000)
            t_more = time.perf_counter() - t0
            rows.append((f"after {a.more_runs} more runs in one session ({t_more / a.more_runs:.2f} s per run)",
                         _mem(proc.pid), peak_rss[0]))
            for c in ctxs:
                c.close()
            browser.close()
    finally:
        stop.set()
        server.close()

    # The CLI's beliefs for the same question and seed.
    for i, (it, got) in enumerate(zip(items, plotted)):
        if got is None:
            continue
        r = subprocess.run([sys.executable, "-m", "backend", "trace", "--model", model, "--benchmark", str(bench_path),
                            "--item", it.id, "--steps", str(a.steps), "--seed", str(a.seed), "--json"],
                           capture_output=True, text=True, cwd=REPO, env=env)
        if r.returncode:
            failures.append(f"CLI on {it.id}: {r.stderr.strip()[:200]}")
            continue
        probs = json.loads(r.stdout)["probs"]  # [K][n]
        cols = list(zip(*probs))  # [n][K]
        if len(cols) != len(got) or any(len(c) != len(g) for c, g in zip(cols, got)):
            failures.append(f"session {i} ({it.id}): plotted shape {[len(g) for g in got]} differs from the "
                            f"CLI's {[len(c) for c in cols]}")
            continue
        diffs.append(max(abs(x - y) for c, g in zip(cols, got) for x, y in zip(c, g)))

    print(f"model `{model}`, {len(items)} sessions on items {items[0].id}..{items[-1].id} of {bench_path.name}, "
          f"{a.steps} steps, seed {a.seed} (5 robustness seeds per run, the app's default)\n")
    print("| moment | server RSS (MiB) | peak RSS so far, /proc VmHWM (MiB) | peak sampled every 0.1 s (MiB) |")
    print("|---|---|---|---|")
    for label, m, peak in rows:
        print(f"| {label} | {m['VmRSS']:.0f} | {m['VmHWM']:.0f} | {'' if peak is None else f'{peak:.0f}'} |")
    print(f"\nplotted beliefs vs `python -m backend trace --json`: {len(diffs)}/{len(items)} sessions compared, "
          f"max |difference| = {max(diffs) if diffs else float('nan'):.2e}")
    print(f"bound: the run store keeps at most {RUN_STORE_SIZE} runs and {FIGURE_STORE_SIZE} figures (LRU)")
    if failures:
        print("\nFAILURES:\n" + "\n".join(failures))
    return 1 if failures or len(diffs) < len(items) or max(diffs, default=1) > 1e-6 else 0


if __name__ == "__main__":
    sys.exit(main())
