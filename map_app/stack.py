"""Holoscan wants a 32 MiB stack; give it one before it starts any thread.

Holoscan warns below 32 MiB and may crash (its docs recommend ``ulimit -s 32768``; the
MAP container sets it too). Thread stacks take their size from the limit at process
start, so raising it means re-executing the process once with the new limit.
"""

from __future__ import annotations

import os
import resource
import sys

STACK_BYTES = 32 * 2**20
_REEXEC_MARK = "MINIVESS_STACK_RAISED"


def ensure_holoscan_stack(module: str) -> None:
    """Re-exec ``python -m module`` with a 32 MiB stack limit if the current one is lower.

    Also keeps Holoscan's own console logging to errors (its INFO lines and the "no CUDA
    driver" warning on CPU sites would drown the application's output) unless the caller
    set ``HOLOSCAN_LOG_LEVEL``.
    """
    os.environ.setdefault("HOLOSCAN_LOG_LEVEL", "ERROR")
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    if soft == resource.RLIM_INFINITY or soft >= STACK_BYTES or os.environ.get(_REEXEC_MARK):
        return
    if hard != resource.RLIM_INFINITY and hard < STACK_BYTES:
        return  # not ours to raise; Holoscan will warn
    resource.setrlimit(resource.RLIMIT_STACK, (STACK_BYTES, hard))
    os.environ[_REEXEC_MARK] = "1"
    os.execv(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]])
