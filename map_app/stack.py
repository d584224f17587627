"""Holoscan wants a 32 MiB stack; give it one before it starts any thread.

Holoscan warns below 32 MiB and may crash (its docs recommend ``ulimit -s 32768``).
Thread stacks take their size from the limit at process start, so raising it means
re-executing the process once with the new limit. The rule lives here; shell cannot
import it, so containers/entrypoint.sh (the MAP container) and scripts/run_tests.sh
repeat it as ``ulimit -s 32768``.
"""

from __future__ import annotations

import os
import resource
import sys

STACK_BYTES = 32 * 2**20
_REEXEC_MARK = "MINIVESS_STACK_RAISED"


def raise_stack_limit() -> bool:
    """Raise this process's soft stack limit to ``STACK_BYTES`` if it is lower.

    Processes and threads started afterwards get it (so this also serves as the
    ``preexec_fn`` of a child that runs Holoscan). True if it was raised; false if it was
    already enough or the hard limit is lower (not ours to raise; Holoscan will warn).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    if soft == resource.RLIM_INFINITY or soft >= STACK_BYTES:
        return False
    if hard != resource.RLIM_INFINITY and hard < STACK_BYTES:
        return False
    resource.setrlimit(resource.RLIMIT_STACK, (STACK_BYTES, hard))
    return True


def ensure_holoscan_stack(module: str) -> None:
    """Re-exec ``python -m module`` with a 32 MiB stack limit if the current one is lower.

    Also keeps Holoscan's own console logging to errors (its INFO lines and the "no CUDA
    driver" warning on CPU sites would drown the application's output) unless the caller
    set ``HOLOSCAN_LOG_LEVEL``.
    """
    os.environ.setdefault("HOLOSCAN_LOG_LEVEL", "ERROR")
    if os.environ.get(_REEXEC_MARK) or not raise_stack_limit():
        return
    os.environ[_REEXEC_MARK] = "1"
    os.execv(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]])
