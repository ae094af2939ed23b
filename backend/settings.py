"""Defaults and names used across LoopLens, defined once.

Everything here is a plain constant (no imports beyond the standard library), so any module, page or test may
import it without pulling in torch, pandas or Streamlit.  A default that is a *parameter* elsewhere (steps, the
metric thresholds, the number of seeds) is defined here and imported where the parameter is declared.
"""
from __future__ import annotations

import string
from pathlib import Path

# --- where things live ---------------------------------------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"
MODELS_DIR = DATA_DIR / "models"          # shipped models: one directory each; the first is the default
BENCHMARKS_DIR = DATA_DIR / "benchmarks"  # shipped benchmark JSONL files
RESULTS_DIR = DATA_DIR / "results"        # shipped sweep reports
LEARN_DIR = DATA_DIR / "learn"            # curated Learn-page examples

# --- environment variables (names) ---------------------------------------------------------------------------
ENV_MODEL_ROOTS = "LOOPLENS_MODEL_ROOTS"      # os.pathsep-separated directories local checkpoints must live under
ENV_RESULTS_ROOTS = "LOOPLENS_RESULTS_ROOTS"  # likewise for results directories opened by the Benchmark page
ENV_DEFAULT_MODEL = "LOOPLENS_DEFAULT_MODEL"  # the model the app opens on (a shipped name or a directory)
ENV_TORCH_THREADS = "LOOPLENS_TORCH_THREADS"  # intra-op torch threads of the app and sweeps

# --- options ---------------------------------------------------------------------------------------------------
LETTERS = string.ascii_uppercase[:10]  # option labels A..J
MIN_OPTIONS, MAX_OPTIONS = 2, 10

# --- recurrent steps -------------------------------------------------------------------------------------------
MIN_STEPS, MAX_STEPS, DEFAULT_STEPS = 1, 256, 30

# --- metric thresholds (method.md; every one is a parameter with this default) ---------------------------------
KL_THRESHOLD = 0.01   # exploration ends when this many consecutive step KLs are <= the threshold
KL_WINDOW = 3
RUN_LENGTH = 3        # an argmax run this long is a commitment

# --- runs and sweeps -------------------------------------------------------------------------------------------
DEFAULT_SEED = 0
DEFAULT_N_SEEDS = 5         # seeds of the app's robustness panel
DEFAULT_PERMUTATIONS = 25   # answer orders per (item, variant)

# --- exit rules and interventions (backend/stopping.py, backend/interventions.py) ------------------------------
STOP_KL_THRESHOLDS = (5e-4, 1e-3)        # Huginn's own adaptive-exit settings (KL between consecutive readouts)
STOP_ENTROPY_THRESHOLDS = (1e-3, 1e-2)   # |H_t - H_(t-1)| below this
STOP_ARGMAX_RUNS = (3, 5)                # the same argmax for this many consecutive steps
STOP_LATENT_THRESHOLDS = (1e-3, 1e-2)    # relative latent change ||s_t - s_(t-1)|| / ||s_t|| below this
STOP_EXIT_QUANTILES = (0.5, 0.9)         # exit gate: cumulative exit probability passes q (families with a gate)
NOISE_SIGMA = 0.5                        # default noise scale of interventions (relative to the state's norm)
