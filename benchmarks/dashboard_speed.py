"""Dashboard speed on this machine.

``python benchmarks/dashboard_speed.py [--model M]`` (AppTest, server-side) measures, with the default model
(or --model / $LOOPLENS_DEFAULT_MODEL):
  * first page load to first plot (fresh process: imports, model load, first 30-step run, all figures),
  * a rerun that needs no new model run (cached trace and figures; e.g. a widget that changes nothing),
  * a new 30-step run of one question (a new seed: model forward for the seeds batch + all figures),
  * the same with one seed (no robustness seeds),
  * a step-slider move (fragment rerun, no model run).
AppTest runs the page script in-process without a browser, so these are server-side times; a browser adds
transfer and drawing.  Prints a Markdown table (median of --repeat runs).

``python benchmarks/dashboard_speed.py --browser [--launch old,new] [--old-repo DIR] [--pages explore,...]``
measures what a user waits for in a real browser (headless Chromium + Playwright): for every launcher, page and
repetition a *fresh* server is started (``old``: ``streamlit run app.py``, in ``--old-repo`` if given; ``new``:
``streamlit run serve.py``; ``cli``: ``python -m backend app``, the same server behind the CLI's imports),
the benchmark waits until its health endpoint (``/_stcore/health``) answers, then opens a fresh browser session
on the page and times ``page.goto`` to the first Plotly chart drawn (its SVG in the page).  Also reported: the
server's start (launch to healthy), the CPU seconds the server and the browser spent until the first chart (from
/proc: independent of the machine's load, unlike the wall time), and a second fresh session on the same server.
Prints a Markdown table (median and max of --repeat servers) and the old/new ratios.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from serving import free_port, server_process  # noqa: E402


LAUNCHERS = {  # name -> (command, how it is given the port)
    "old": ([sys.executable, "-m", "streamlit", "run", "app.py"], "streamlit"),
    "new": ([sys.executable, "-m", "streamlit", "run", "serve.py"], "streamlit"),
    "cli": ([sys.executable, "-m", "backend", "app"], "cli"),
}
PAGE_PATHS = {"explore": "/", "compare": "/compare", "benchmark": "/benchmark", "learn": "/learn"}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
FIRST_CHART = "document.querySelector('.js-plotly-plot .main-svg') !== null"


@contextlib.contextmanager
def _server(launch: str, repo: Path):
    """A fresh server started with ``launch`` in ``repo``; yields (url, seconds from launch to a healthy health
    endpoint, server pid)."""
    port = free_port()
    cmd, style = LAUNCHERS[launch]
    if style == "cli":
        cmd = cmd + ["--port", str(port), "--address", "127.0.0.1"]
    else:
        cmd = cmd + ["--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                     "--browser.gatherUsageStats", "false"]
    log_path = REPO / "benchmarks" / f".dashboard_speed_{launch}.log"
    with contextlib.ExitStack() as stack:
        try:
            url, took, proc = stack.enter_context(server_process(cmd, port, log_path, cwd=repo, timeout=600,
                                                                 poll=0.05))
        except RuntimeError as exc:
            raise SystemExit(f"{launch} server: {exc}") from None
        yield url, took, proc.pid


def _cpu_times() -> dict:
    """CPU seconds (user + system) of every process on the machine: pid -> (parent pid, seconds, command line)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out[int(d.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, cmd)
    return out


def _descendants(snap: dict, root: int) -> set:
    kids, todo = set(), [root]
    while todo:
        p = todo.pop()
        for pid, (ppid, _, _) in snap.items():
            if ppid == p and pid not in kids:
                kids.add(pid)
                todo.append(pid)
    return kids


def _cpu_split(before: dict, after: dict, server_pid: int) -> tuple:
    """CPU seconds spent between two snapshots by the server (its process tree) and by this benchmark's Chromium."""
    def used(pids):
        return sum(after[p][1] - (before[p][1] if p in before else 0.0) for p in pids if p in after)

    server = {server_pid} | _descendants(after, server_pid)
    mine = _descendants(after, os.getpid())
    chrome = {p for p in mine - server if "chrom" in after[p][2]}
    return used(server), used(chrome)


def _first_chart(browser, url: str, server_pid: int) -> tuple:
    """Seconds from page.goto in a fresh browser session to the first Plotly chart drawn, and the CPU seconds the
    server and the browser spent meanwhile (load-independent: on an idle machine the wait is about their sum at
    most, less where they overlap on the two cores)."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = ctx.new_page()
        before = _cpu_times()
        t = time.perf_counter()
        page.goto(url)
        page.wait_for_function(FIRST_CHART, timeout=300_000, polling=20)
        dt = time.perf_counter() - t
        server_cpu, browser_cpu = _cpu_split(before, _cpu_times(), server_pid)
        if page.locator("[data-testid='stException']").count():
            raise SystemExit(f"exception on {url}: {page.locator('[data-testid=stException]').first.inner_text()}")
        return dt, server_cpu, browser_cpu
    finally:
        ctx.close()


def browser_main(a) -> None:
    from playwright.sync_api import sync_playwright

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server it started, when stopped itself

    launches = [x.strip() for x in a.launch.split(",") if x.strip()]
    pages = [x.strip() for x in a.pages.split(",") if x.strip()]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    res = {}  # (launch, page) -> {"start": [...], "first": [...], "second": [...]}
    load = [os.getloadavg()[0]]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
        for rep in range(a.repeat):
            for page in pages:
                for launch in launches:  # interleaved, so a change in the machine's load hits both alike
                    r = res.setdefault((launch, page), {"start": [], "first": [], "second": [], "cpu": []})
                    repo = Path(a.old_repo) if launch == "old" and a.old_repo else REPO
                    with _server(launch, repo) as (url, start, pid):
                        first, s_cpu, b_cpu = _first_chart(browser, url + PAGE_PATHS[page], pid)
                        second = _first_chart(browser, url + PAGE_PATHS[page], pid)[0]
                    load.append(os.getloadavg()[0])
                    r["start"].append(start)
                    r["first"].append(first)
                    r["second"].append(second)
                    r["cpu"].append((s_cpu, b_cpu))
                    print(f"# rep {rep + 1} {page:9s} {launch}: server up {start:5.2f} s, first chart {first:5.2f} s "
                          f"(CPU: server {s_cpu:.2f} s, browser {b_cpu:.2f} s), second session {second:5.2f} s "
                          f"(load {load[-1]:.1f})", file=sys.stderr, flush=True)
        browser.close()
    med = statistics.median
    print(f"model: {os.environ.get('LOOPLENS_DEFAULT_MODEL') or 'default (first shipped)'}; "
          f"torch threads: {os.environ.get('LOOPLENS_TORCH_THREADS', 'default (cores/2)')}; "
          f"1-min load average during the runs: {min(load):.1f}-{max(load):.1f}; {a.repeat} fresh servers each\n")
    print("| page | launcher | server start to healthy (s) | first chart after healthy: median (max) (s) | "
          "CPU meanwhile: server + browser (s) | second session (s) |")
    print("|---|---|---|---|---|---|")
    for page in pages:
        for launch in launches:
            r = res[(launch, page)]
            sc, bc = med([c[0] for c in r["cpu"]]), med([c[1] for c in r["cpu"]])
            print(f"| {page} | {launch} | {med(r['start']):.2f} | **{med(r['first']):.2f}** ({max(r['first']):.2f}) | "
                  f"{sc:.2f} + {bc:.2f} = {sc + bc:.2f} | {med(r['second']):.2f} |")
    if "old" in launches and "new" in launches:
        print()
        for page in pages:
            o, n = med(res[("old", page)]["first"]), med(res[("new", page)]["first"])
            so = med(res[("old", page)]["start"]) + o
            sn = med(res[("new", page)]["start"]) + n
            co = sum(map(med, zip(*res[("old", page)]["cpu"])))
            cn = sum(map(med, zip(*res[("new", page)]["cpu"])))
            print(f"- {page}: first chart after healthy old/new = {o:.2f}/{n:.2f} s = **{o / n:.1f}x**; CPU to the "
                  f"first chart {co:.2f}/{cn:.2f} s = {co / cn:.1f}x; launch to first chart {so:.2f}/{sn:.2f} s = "
                  f"{so / sn:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--browser", action="store_true", help="real browser, fresh servers (see the docstring)")
    ap.add_argument("--launch", default="old,new", help="launchers to compare: old (streamlit run app.py), "
                    "new (streamlit run serve.py), cli (python -m backend app: the same as new)")
    ap.add_argument("--old-repo", default=None, help="run the old launcher in this checkout (e.g. the commit "
                    "before the change, from `git archive`); default: this one")
    ap.add_argument("--pages", default="explore,compare,benchmark,learn")
    a = ap.parse_args()
    if a.model:
        os.environ["LOOPLENS_DEFAULT_MODEL"] = a.model
    if a.browser:
        browser_main(a)
        return
    from streamlit.testing.v1 import AppTest

    from backend.models.runtime import default_model

    model = default_model()
    if model is None:
        sys.exit("no model: pass --model DIR or ship one in data/models")
    t0 = time.perf_counter()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.run()
    first = time.perf_counter() - t0
    assert not at.exception, at.exception
    assert at.get("plotly_chart"), "no plot"

    def timed(action) -> list:
        out = []
        for _ in range(a.repeat):
            action()
            t = time.perf_counter()
            at.run()
            out.append(time.perf_counter() - t)
            assert not at.exception, at.exception
        return out

    seed = [100]

    def new_seed():
        seed[0] += 1
        at.number_input(key="seed").set_value(seed[0])

    rerun = timed(lambda: None)
    new5 = timed(new_seed)
    at.number_input(key="n_seeds").set_value(1).run()
    new1 = timed(new_seed)
    steps = iter(range(2, 200))
    slider = []
    for _ in range(a.repeat):
        s = at.slider(key="step_slider").set_value(next(steps) % 30 + 1)
        t = time.perf_counter()
        s.run()
        slider.append(time.perf_counter() - t)
    med = statistics.median
    print(f"model: {model}; torch threads: {os.environ.get('LOOPLENS_TORCH_THREADS', 'default (cores/2)')}; "
          f"load average: {os.getloadavg()[0]:.1f}; repeats: {a.repeat}\n")
    print("| measurement | median (s) | max (s) | target |")
    print("|---|---|---|---|")
    print(f"| first page load to first plot (fresh process, incl. imports + model load) | {first:.2f} | {first:.2f} | < 10 s |")
    print(f"| rerun, no new model run | {med(rerun):.3f} | {max(rerun):.3f} | < 0.5 s |")
    print(f"| new 30-step run (5 seeds in one batch + all figures) | {med(new5):.3f} | {max(new5):.3f} | < 1 s |")
    print(f"| new 30-step run (1 seed + all figures) | {med(new1):.3f} | {max(new1):.3f} | < 1 s |")
    print(f"| step slider (fragment) | {med(slider):.3f} | {max(slider):.3f} | — |")


if __name__ == "__main__":
    main()
