"""Dashboard speed on this machine (AppTest timing; run: python benchmarks/dashboard_speed.py [--model M]).

Measures, with the default model (or --model / $LOOPLENS_DEFAULT_MODEL):
  * first page load to first plot (fresh process: imports, model load, first 30-step run, all figures),
  * a rerun that needs no new model run (cached trace and figures; e.g. a widget that changes nothing),
  * a new 30-step run of one question (a new seed: model forward for the seeds batch + all figures),
  * the same with one seed (no robustness seeds),
  * a step-slider move (fragment rerun, no model run).
AppTest runs the page script in-process without a browser, so these are server-side times; a browser adds
transfer and drawing.  Prints a Markdown table (median of --repeat runs).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    if a.model:
        os.environ["LOOPLENS_DEFAULT_MODEL"] = a.model
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
