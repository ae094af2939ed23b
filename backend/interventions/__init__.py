"""Interventions on the latent state at one recurrent step, traced beside their baseline.

An :class:`Intervention` acts on s_k, the state after step k (1 <= k < K), before that step's readout.  It is
applied through the one run loop every family shares, ``iterate_steps(..., state_hook=hook)``, so it works for
every model family the engine implements (it only uses ``step``'s output and ``initial_state``):

``noise``   s_k + sigma * |s_k[pos]| / sqrt(E) * z at every real prompt position, z ~ N(0, I) from a generator
            seeded by (``noise_seed``, the run's own initial-state seed): the added vector at a position has an
            expected norm of about sigma times that position's state norm.  Drawn on the CPU in float32 for the
            row's real (unpadded) positions only, so a run gets the same noise alone or inside a padded batch.
``reset``   s_k := ``model.initial_state`` with the run's own seed (default) or ``reset_seed``.  With the run's
            own seed, step k + j reproduces the baseline's step j exactly.
``freeze``  the state stays s_k from step k on: the hook stores s_k and returns it at every t > k, so every
            later step's update is discarded and the readouts repeat (the family's ``step`` still runs; its
            output is replaced).
``splice``  s_k := the state at step j (``splice_step``, default k) of another run of the same item: another
            variant, answer order or initial-state seed (``splice_from``), or the run itself (``splice_from``
            None: with j < k the run's own earlier state, e.g. from before a backtrack).  Which positions are
            spliced (``splice_positions``):

            - ``"shared"`` (default): the shared prompt prefix and the shared prompt suffix (longest common
              runs of identical tokens at the start and at the end; the suffix always includes the last
              position, the one the readout reads); every other position keeps the run's own state.  When the
              two prompts are identical (another seed, or the run itself) this is every position.
            - ``"last"``: the last position only.
            - ``"all"``: every position; refused with a message naming what ``"shared"`` would splice when the
              two prompts differ in length.

Exact invariants (tests/test_interventions.py): noise with sigma 0 equals the baseline; splicing a run's own
state equals the baseline; reset at k with the run's own seed gives at k + j the baseline's belief at j; freeze
gives constant beliefs after k.

The package, one concern per module (imports go one way: spec <- positions <- hooks <- run; spec <- cli):
:mod:`.spec` (:class:`Intervention`), :mod:`.positions` (:func:`splice_plan`), :mod:`.hooks` (the state hooks,
:func:`capture_states`), :mod:`.run` (tracing with and beside the baseline), :mod:`.cli` (command-line options).
"""
from __future__ import annotations

from ..counterfactual import change_summary, compare
from .cli import add_cli_arguments, intervention_from_args, parse_splice_from
from .hooks import add_relative_noise, capture_states, make_hook, noise_generator_seed, splice_rows
from .positions import SplicePlan, splice_plan
from .run import (InterventionRequest, InterventionResult, format_result, source_item, trace_intervened,
                  trace_with_baseline)
from .spec import KINDS, SCHEMA, SPLICE_FROM_KEYS, SPLICE_POSITIONS, Intervention

__all__ = ["KINDS", "SCHEMA", "SPLICE_FROM_KEYS", "SPLICE_POSITIONS", "Intervention", "InterventionRequest",
           "InterventionResult", "SplicePlan", "add_cli_arguments", "add_relative_noise", "capture_states",
           "change_summary", "compare", "format_result", "intervention_from_args", "make_hook",
           "noise_generator_seed", "parse_splice_from", "source_item", "splice_plan", "splice_rows",
           "trace_intervened", "trace_with_baseline"]
