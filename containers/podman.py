"""podman with the repository's configuration, and what it says about local images.

Podman reads ``containers/containers.conf`` (runc, cgroupfs, file events, explicit
ulimits) unless ``CONTAINERS_CONF`` is set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from containers.commands import ContainerBuildError

CONTAINERS_CONF = Path(__file__).resolve().with_name("containers.conf")


def podman_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for podman: ``CONTAINERS_CONF`` -> the repository's config unless set."""
    env = dict(os.environ if base is None else base)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def require_podman() -> str:
    found = shutil.which("podman")
    if found is None:
        raise ContainerBuildError(
            "podman not found: install podman, buildah, runc (scripts/bootstrap.sh peers)"
        )
    return found


def podman(
    *args: str, check: bool = True, timeout: float | None = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``podman ARGS`` with the repository's config; output captured as text."""
    done = subprocess.run(
        [require_podman(), *args],
        capture_output=True,
        text=True,
        env=podman_env(),
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise ContainerBuildError(
            f"podman {' '.join(args[:3])} ... failed (exit {done.returncode}):\n"
            f"{(done.stdout + done.stderr)[-4000:]}"
        )
    return done


def image_labels(ref: str) -> dict[str, str] | None:
    """The labels of a local image, or None when there is no such image."""
    done = podman("image", "inspect", "--format", "{{json .Labels}}", ref, check=False)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout.strip() or "null") or {}


def image_id(ref: str) -> str:
    return podman("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def image_size(ref: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())
