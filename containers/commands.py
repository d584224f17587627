"""The image build's commands: their error, their progress log and their log files."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

Log = Callable[[str], None]


class ContainerBuildError(RuntimeError):
    """A build step failed; the message says which and shows the end of its log."""


def log_to_stderr(message: str) -> None:
    """The default progress log of the build."""
    print(f"containers.build: {message}", file=sys.stderr, flush=True)


def run_logged(cmd: Sequence[str], log_path: Path, what: str, env: dict[str, str]) -> None:
    """Run ``cmd`` with its output in ``log_path``; on failure raise with the log's tail."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        status = subprocess.run(
            list(cmd), stdout=out, stderr=subprocess.STDOUT, env=env, check=False
        ).returncode
    if status != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        raise ContainerBuildError(f"{what} failed (exit {status}); log {log_path}:\n{tail}")
