"""The Debian base image ``localhost/minivess-base:bookworm``, made with ``mmdebstrap``.

Made from the Debian mirror named in this machine's apt sources (no registry needed),
kept as a tar under ``var/containers/base`` keyed by its recipe, and imported into
podman. Sites build on their own approved base instead (``--base-image``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable

from containers.cache import CACHE_DIR, RECIPE_VERSION, digest
from containers.commands import ContainerBuildError, Log, log_to_stderr, run_logged
from containers.debian_mirror import SUITE, debian_sources
from containers.podman import image_labels, podman

BASE_IMAGE = f"localhost/minivess-base:{SUITE}"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
MMDEBSTRAP_OPTIONS = (
    "--variant=apt",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
)
# The label with the recipe's key, so that a current base image is recognised.
BASE_KEY_LABEL = "io.minivess.base.key"


def base_key(packages: Iterable[str] = BASE_PACKAGES) -> str:
    return digest(RECIPE_VERSION, SUITE, *sorted(packages), *MMDEBSTRAP_OPTIONS)[:16]


def ensure_base_image(*, refresh: bool = False, log: Log = log_to_stderr) -> str:
    """``localhost/minivess-base:bookworm`` made by mmdebstrap, from cache when possible."""
    key = base_key()
    labels = image_labels(BASE_IMAGE)
    if not refresh and labels is not None and labels.get(BASE_KEY_LABEL) == key:
        return BASE_IMAGE
    tar = CACHE_DIR / "base" / f"{SUITE}-{key}.tar"
    if refresh or not tar.is_file():
        mmdebstrap = shutil.which("mmdebstrap")
        if mmdebstrap is None:
            raise ContainerBuildError(
                "mmdebstrap not found (scripts/bootstrap.sh peers installs it)"
            )
        for old in tar.parent.glob("*.tar*"):
            old.unlink()
        tar.parent.mkdir(parents=True, exist_ok=True)
        partial = tar.with_suffix(".tar.partial")
        sources = debian_sources()
        log(f"base: mmdebstrap {SUITE} from {sources[0].split()[1]} ...")
        started = time.monotonic()
        cmd = [
            mmdebstrap,
            *MMDEBSTRAP_OPTIONS,
            "--include=" + ",".join(BASE_PACKAGES),
            "--format=tar",
            SUITE,
            str(partial),
            *sources,
        ]
        run_logged(cmd, CACHE_DIR / "logs" / "mmdebstrap.log", "mmdebstrap", dict(os.environ))
        partial.rename(tar)
        log(f"base: {tar.stat().st_size / 1e6:.0f} MB in {time.monotonic() - started:.0f} s")
    podman(
        "import",
        "--change",
        'CMD ["/bin/bash"]',
        "--change",
        f"LABEL {BASE_KEY_LABEL}={key}",
        "--message",
        f"mmdebstrap {SUITE} {key}",
        str(tar),
        BASE_IMAGE,
    )
    log(f"base: imported {BASE_IMAGE}")
    return BASE_IMAGE
