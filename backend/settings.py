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

# --- prompts --------------------------------------------------------------------------------------------------
MAX_TEMPLATE_CHARS = 20_000   # any one text field of a prompt template
MAX_PROMPT_CHARS = 200_000    # a rendered prompt (checked before it is built, then the model's context in tokens)

# --- recurrent steps -------------------------------------------------------------------------------------------
MIN_STEPS, MAX_STEPS, DEFAULT_STEPS = 1, 256, 30
# Above this many steps the step axis of the one-run figures is logarithmic: a run's dynamics mostly sit in its first
# tens of steps, which a linear axis of 256 steps squeezes into a few pixels.
LOG_STEP_AXIS_ABOVE = 50

# --- metric thresholds (method.md; every one is a parameter with this default) ---------------------------------
KL_THRESHOLD = 0.01   # exploration ends when this many consecutive step KLs are <= the threshold
KL_WINDOW = 3
RUN_LENGTH = 3        # an argmax run this long is a commitment
SHORT_TRAJECTORY_STEPS = 8  # at or below this many steps a run length of RUN_LENGTH says little (UI note)
# A step whose total option mass (the probability of all option-letter tokens in the full-vocabulary softmax) is
# below this is "not answering": its belief (the masses renormalised over the options) is rounding noise, shown
# greyed and never evidence of a preference.  Why 0.01: the prompt ends where the answer letter goes, so a step
# that answers puts most of the next-token probability on the letters, and one that does not puts almost none
# there.  Measured on the shipped default model (cups-mini, 140 items x 24 orders x 3 seeds): on Base the mass
# from exploration end on stays >= 0.956 in 99% of instances (median 0.99998); on NCA the step-30 mass has median
# 7.6e-6 and maximum 1.4e-3.  1% sits well between the two (7x above the highest NCA value, ~100x below answering
# Base steps): below it, 99% of what the model would say next is not an option at all.  A parameter everywhere
# (`--mass-threshold`); report it with every number it affects.
MASS_THRESHOLD = 0.01
# Sensitivity of the report (method.md, "Reporting rules"): run lengths and KL thresholds around the defaults.
SENSITIVITY_RUN_LENGTHS = (2, 3, 4, 5)
SENSITIVITY_KL_THRESHOLDS = (0.003, 0.01, 0.03)

# --- runs and sweeps -------------------------------------------------------------------------------------------
DEFAULT_SEED = 0
DEFAULT_N_SEEDS = 5         # seeds of the app's robustness panel
# Answer orders per (item, variant) where one number is needed (exit reports): all 24 distinct orders of four
# options, each option in each position equally often.  Sweeps default to *all distinct orders* of each item's
# option count (``SWEEP_PERMUTATIONS = None``; ``backend.items.balanced_permutation_count``).
DEFAULT_PERMUTATIONS = 24
SWEEP_PERMUTATIONS = None
# Above this many distinct orders (n > 5 options) "all orders" is replaced by the largest whole number of balanced
# blocks of n cyclic rotations that fits in it (every option in every position equally often).
MAX_DEFAULT_ORDERS = 120
# Initial-state seeds per instance of a sweep: a backtrack verdict is robust when it holds under a majority of them
# (with --init-scale 0 the initial state is zeros, every seed gives the same run, and one seed is run).
SWEEP_SEEDS = 3

# --- exit rules and interventions (backend/stopping.py, backend/interventions.py) ------------------------------
STOP_KL_THRESHOLDS = (5e-4, 1e-3)        # Huginn's own adaptive-exit settings (KL between consecutive readouts)
STOP_ENTROPY_THRESHOLDS = (1e-3, 1e-2)   # |H_t - H_(t-1)| below this
STOP_ARGMAX_RUNS = (3, 5)                # the same argmax for this many consecutive steps
STOP_LATENT_THRESHOLDS = (1e-3, 1e-2)    # relative latent change ||s_t - s_(t-1)|| / ||s_t|| below this
STOP_EXIT_QUANTILES = (0.5, 0.9)         # exit gate: cumulative exit probability passes q (families with a gate)
NOISE_SIGMA = 0.5                        # default noise scale of interventions (relative to the state's norm)
