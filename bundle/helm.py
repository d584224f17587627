"""Helm's chart operations (render, lint, package), run in a child process.

helm-python-sdk loads Helm's Go runtime into whichever process imports it: a c-shared
library with its own threads and signal handlers, which requires every other signal
handler in the process to be installed with ``SA_ONSTACK``
(https://pkg.go.dev/os/signal, "Non-Go programs that call Go code"). Beside Holoscan,
ONNX Runtime and a service's threads that is a crash nobody can trace: CI died twice of
a segmentation fault, with no Python traceback, on the first chart render after the
service tests. So no process of ours imports ``helm_python`` except the child this
module starts (``python -m bundle.helm``), which answers one JSON request per line.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class HelmError(RuntimeError):
    """Helm refused the request; the message is Helm's, its error type first."""


class _Child:
    """The one helper process of this process, started on first use, restarted if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None

    def call(self, operation: str, **arguments: Any) -> Any:
        with self._lock:
            process = self._running()
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(json.dumps({"op": operation, "args": arguments}) + "\n")
            process.stdin.flush()
            line = process.stdout.readline()
            if not line:
                code = process.wait()
                self._process = None
                raise HelmError(f"the Helm child process died (exit code {code}) on {operation}")
        reply = json.loads(line)
        if "error" in reply:
            raise HelmError(reply["error"])
        return reply["result"]

    def _running(self) -> subprocess.Popen[str]:
        if self._process is None or self._process.poll() is not None:
            path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
            self._process = subprocess.Popen(
                [sys.executable, "-m", "bundle.helm"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": path},
            )
            atexit.register(self._process.communicate)  # EOF on stdin ends it
        return self._process


_CHILD = _Child()


def render(
    chart: str | Path, values: dict[str, Any], *, name: str, namespace: str
) -> dict[str, str]:
    """Every template of the chart (a folder or a packaged .tgz) rendered: path to text."""
    result: dict[str, str] = _CHILD.call(
        "render", chart=str(chart), values=values, name=name, namespace=namespace
    )
    return result


def lint(chart: str | Path, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """``helm lint --strict``: ``{"messages": [{"severity", "path", "error"}], "errors"}``."""
    report: dict[str, Any] = _CHILD.call("lint", chart=str(chart), values=values)
    return report


def package(chart: str | Path, destination: str | Path, app_version: str | None = None) -> Path:
    """``helm package``: the archive written into ``destination``."""
    return Path(
        _CHILD.call(
            "package", chart=str(chart), destination=str(destination), app_version=app_version
        )
    )


def values_from_yaml(text: str) -> dict[str, Any]:
    """A values file parsed as Helm parses ``-f``."""
    values: dict[str, Any] = _CHILD.call("values_from_yaml", text=text)
    return values


def _serve() -> None:
    """The child: answer requests from stdin until it closes."""
    import helm_python

    def run(op: str, args: dict[str, Any]) -> Any:
        if op == "render":
            chart = helm_python.Chart.load(args["chart"])
            return chart.render(args["values"], name=args["name"], namespace=args["namespace"])
        if op == "lint":
            return helm_python.lint(args["chart"], args["values"], strict=True)
        if op == "package":
            return helm_python.package(
                args["chart"], destination=args["destination"], app_version=args["app_version"]
            )
        if op == "values_from_yaml":
            return helm_python.values_from_yaml(args["text"])
        raise ValueError(f"unknown Helm operation {op!r}")

    # Replies go on a private copy of stdout; anything the library prints goes to stderr.
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = {"result": run(request["op"], request["args"])}
        except (helm_python.HelmError, ValueError) as error:
            reply = {"error": f"{type(error).__name__}: {error}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    _serve()
