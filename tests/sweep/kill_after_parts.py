"""Run ``python -m backend sweep ARGS`` and SIGKILL the process right after its N-th part is written.

``python tests/sweep/kill_after_parts.py N sweep --model ...``: the test's hard kill, through the sweep's
``after_part`` callback (production code has no kill switch).
"""
import functools
import os
import signal
import sys

from backend import cli
from backend.sweep import local


def main() -> int:
    n = int(sys.argv[1])
    written = []

    def after_part(path):
        written.append(path)
        if len(written) >= n:
            os.kill(os.getpid(), signal.SIGKILL)

    cli.run_sweep = functools.partial(local.run_sweep, after_part=after_part)
    return cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
