"""Runs inside the appliance image (its own python3) during ``bundle build``.

    podman run --rm --network none --entrypoint python3 \
        -v bundle/probe.py:/probe/probe.py:ro -v SBOM_TOOL_SITE_PACKAGES:/sbomtool:ro \
        IMAGE /probe/probe.py /sbomtool

Prints one JSON object: the SHA-256 of the models baked into the image, whether the
image has the HTTP sidecar (then deploy.sh checks ``/readyz``), its Debian packages, its
``/etc/os-release`` and the CycloneDX SBOM of its Python environment, made by
``cyclonedx-py environment`` run here, against the image's own interpreter. The
cyclonedx tool's packages come from the build machine's environment, appended to
``sys.path`` of this process only, so they neither shadow the image's packages nor
appear in its SBOM (the environment is read through a separate interpreter process).
Standard library only.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

MODELS = Path("/opt/holoscan/models/minivess-vessel-ensemble")
VENV_PYTHON = "/opt/venv/bin/python"
RUNNER = (
    "import sys; sys.path.append(sys.argv.pop(1)); "
    "from cyclonedx_py._internal.cli import run; sys.exit(run(prog='cyclonedx-py'))"
)


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:  # the probe runs without the project: stdlib only
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _debian_packages() -> list[dict[str, str]]:
    fields = "${Package}\t${Version}\t${Architecture}\t${source:Package}\t${db:Status-Abbrev}\n"
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", fields], capture_output=True, text=True, check=True
    )
    packages = []
    for line in done.stdout.splitlines():
        name, version, arch, source, status = line.split("\t")
        if status.strip() == "ii":
            packages.append({"name": name, "version": version, "arch": arch, "source": source})
    return packages


def main() -> int:
    tool = sys.argv[1]
    out = Path("/tmp/python-environment.cdx.json")
    cmd = [sys.executable, "-c", RUNNER, tool, "environment", "--sv", "1.6", "--of", "JSON"]
    cmd += ["--output-reproducible", "-o", str(out), VENV_PYTHON]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"cyclonedx-py environment failed: {done.stderr[-2000:]}", file=sys.stderr)
        return 1
    facts = {
        "models": {p.name: _sha256(p) for p in sorted(MODELS.iterdir()) if p.is_file()},
        "http_sidecar": _has_module("service.http.health"),
        "debian_packages": _debian_packages(),
        "os_release": Path("/etc/os-release").read_text(),
        "python_version": sys.version.split()[0],
        "python_sbom": json.loads(out.read_text()),
    }
    print(json.dumps(facts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
