"""The intervention options of ``python -m backend trace`` and ``sweep``, and the intervention they ask for."""
from __future__ import annotations

from typing import Dict, Optional

from ..errors import UsageError
from .spec import KINDS, SPLICE_FROM_KEYS, SPLICE_POSITIONS, Intervention


def parse_splice_from(text: Optional[str]) -> Optional[Dict[str, object]]:
    """``variant=V``, ``permutation=P`` or ``seed=S`` -> a splice source (None stays None)."""
    if text is None:
        return None
    key, sep, val = str(text).partition("=")
    key, val = key.strip(), val.strip()
    if not sep or key not in SPLICE_FROM_KEYS or not val:
        raise UsageError(f"--splice-from must be variant=V, permutation=P or seed=S, got {text!r}")
    if key == "variant":
        return {key: val}
    try:
        return {key: int(val)}
    except ValueError:
        raise UsageError(f"--splice-from {key} must be a whole number, got {val!r}") from None


def add_cli_arguments(p, sweep: bool = False) -> None:
    """The intervention options of ``python -m backend trace`` (and, the same grammar, of ``sweep``: every
    instance is run with the intervention and beside its baseline; ``--splice-from seed=S`` is then the seed
    index S of the same instance)."""
    g = p.add_argument_group(
        "intervention (run every instance with an intervention beside its baseline; rows get intervention columns)"
        if sweep else "intervention (trace the run with an intervention beside its baseline)")
    g.add_argument("--intervene", choices=KINDS, default=None,
                   help="act on the latent state at step --at: noise, reset (to an initial state), freeze, splice")
    g.add_argument("--at", type=int, default=None, help="the step k of the intervention, 1 <= k < steps")
    g.add_argument("--sigma", type=float, default=None, help="noise scale relative to the state's norm per position")
    g.add_argument("--noise-seed", type=int, default=None, help="seed of the noise (default 0)")
    g.add_argument("--reset-seed", type=int, default=None,
                   help="reset to the initial state of this seed (default: the run's own)")
    g.add_argument("--splice-from", default=None, metavar="variant=V|permutation=P|seed=S",
                   help="splice the state of another run of the same item (default: this run)")
    g.add_argument("--splice-step", type=int, default=None, help="the source run's step (default: --at)")
    g.add_argument("--splice-positions", choices=SPLICE_POSITIONS, default=None,
                   help="shared (prompt prefix + suffix, default), last, or all positions")


def intervention_from_args(a) -> Optional[Intervention]:
    """The intervention the trace options ask for, or None; a bad combination is a one-line UsageError."""
    opts = {"--at": a.at, "--sigma": a.sigma, "--noise-seed": a.noise_seed, "--reset-seed": a.reset_seed,
            "--splice-from": a.splice_from, "--splice-step": a.splice_step,
            "--splice-positions": a.splice_positions}
    given = [k for k, v in opts.items() if v is not None]
    if a.intervene is None:
        if given:
            raise UsageError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --intervene "
                             "noise|reset|freeze|splice")
        return None
    if a.at is None:
        raise UsageError(f"--intervene {a.intervene} needs --at K (the step of the intervention)")
    allowed = {"noise": {"--sigma", "--noise-seed"}, "reset": {"--reset-seed"}, "freeze": set(),
               "splice": {"--splice-from", "--splice-step", "--splice-positions"}}[a.intervene]
    extra = [k for k in given if k != "--at" and k not in allowed]
    if extra:
        raise UsageError(f"{', '.join(extra)} {'does' if len(extra) == 1 else 'do'} not apply to --intervene "
                             f"{a.intervene}")
    kw: Dict[str, object] = {}
    if a.intervene == "noise":
        if a.sigma is None:
            raise UsageError("--intervene noise needs --sigma X (noise scale relative to the state's norm)")
        kw.update(sigma=a.sigma, noise_seed=a.noise_seed or 0)
    elif a.intervene == "reset":
        kw["reset_seed"] = a.reset_seed
    elif a.intervene == "splice":
        kw.update(splice_from=parse_splice_from(a.splice_from), splice_step=a.splice_step,
                  splice_positions=a.splice_positions or "shared")
    return Intervention(a.intervene, a.at, **kw)
