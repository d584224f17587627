"""The README's first command, ``make demo``, on a fresh Debian 12 machine, as root.

A root file system made by mmdebstrap from Debian's packages with only what the README
says a fresh machine needs (python3, ca-certificates, make, git): no python3-venv, no pip,
no uv, no /opt/wheels, no torch wheel. It is cached under ``var/fresh-root/``, keyed by
its recipe, and imported into podman as ``localhost/minivess-fresh-root:<key>``, like
containers/build.py caches its base image. The test makes a clean ``git clone`` of this
checkout's committed HEAD, so uncommitted changes are NOT tested, mounts it into a
container of that root and runs ``make demo`` there as root. It checks that the command
succeeds, that the DICOM SEG (and the uncertainty map and SR) it prints exist, that the
output gives the vessel volume, and that ``.venv`` holds no torch.

Network: the container shares the host's network, which reaches the package registries
(PyPI, the Debian mirror named by the host's apt sources, as containers/build.py reads
them) through a proxy whose CA is in the host's bundle; the bundle is mounted read-only
at the same path and named by SSL_CERT_FILE / REQUESTS_CA_BUNDLE / PIP_CERT (and
UV_SYSTEM_CERTS for uv). Apt proxy settings of the host (apt.conf files that mention a
proxy) and HTTP(S)_PROXY variables are passed through. Nothing else of the host's Python
setup goes in: no pip.conf, no PIP_FIND_LINKS, no /opt/wheels.

The host's uv cache is mounted read-write as the container's UV_CACHE_DIR. That is the
equivalent of a caching proxy in front of PyPI (every byte still comes from the registry
the first time); it keeps this test at minutes instead of downloading the ~1.7 GB runtime
on every run. uv copies from it (UV_LINK_MODE=copy: the cache and the clone are different
mounts, no hard links across them).

Measured on 2 cores, behind this build machine's proxy: cold (no cached root, an empty
uv cache) 1.5 min: mmdebstrap 35-65 s, then make demo 41 s including the 1.6 GB download
(a slower link to PyPI adds to that); warm (cached root, the host's uv cache) 45 s to
1.75 min (machine load), nearly all of it make demo: apt-get of python3-venv, uv into its
venv, copying the runtime into .venv (~1.6 GB) and the demo itself.

Only the container this test starts is removed, by its name.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from containers import base_image, cache, commands, debian_mirror, podman, wheelhouse

REPO = Path(__file__).resolve().parents[1]
CACHE_DIR = REPO / "var" / "fresh-root"
IMAGE = "localhost/minivess-fresh-root"
KEY_LABEL = "io.minivess.fresh-root.key"
# What README.md says a fresh machine needs; nothing more.
FRESH_PACKAGES = ("python3", "ca-certificates", "make", "git")
RECIPE_VERSION = "1"  # bump when the recipe below changes
DEFAULT_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3000)]


def _log(message: str) -> None:
    print(f"fresh-root: {message}", flush=True)


def root_key() -> str:
    recipe = [
        RECIPE_VERSION,
        debian_mirror.SUITE,
        *sorted(FRESH_PACKAGES),
        *base_image.MMDEBSTRAP_OPTIONS,
    ]
    return hashlib.sha256("\n".join(recipe).encode()).hexdigest()[:16]


def fresh_root_image() -> str:
    """The fresh Debian root as a podman image, from cache when its recipe is unchanged."""
    key = root_key()
    ref = f"{IMAGE}:{key}"
    with cache.cache_lock(CACHE_DIR):
        labels = podman.image_labels(ref)
        if labels is not None and labels.get(KEY_LABEL) == key:
            return ref
        tar = CACHE_DIR / f"{debian_mirror.SUITE}-{key}.tar"
        if not tar.is_file():
            mmdebstrap = shutil.which("mmdebstrap")
            if mmdebstrap is None:
                pytest.fail("mmdebstrap not found (scripts/bootstrap.sh peers installs it)")
            for old in CACHE_DIR.glob("*.tar*"):
                old.unlink()
            partial = tar.with_suffix(".tar.partial")
            sources = debian_mirror.debian_sources()
            _log(f"mmdebstrap {debian_mirror.SUITE} ({', '.join(FRESH_PACKAGES)}) ...")
            started = time.monotonic()
            done = subprocess.run(
                [
                    mmdebstrap,
                    *base_image.MMDEBSTRAP_OPTIONS,
                    "--include=" + ",".join(FRESH_PACKAGES),
                    "--format=tar",
                    debian_mirror.SUITE,
                    str(partial),
                    *sources,
                ],
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            if done.returncode != 0:
                pytest.fail(f"mmdebstrap failed:\n{(done.stdout + done.stderr)[-4000:]}")
            partial.rename(tar)
            _log(f"root: {tar.stat().st_size / 1e6:.0f} MB in {time.monotonic() - started:.0f} s")
        podman.podman(
            "import",
            "--change",
            'CMD ["/bin/bash"]',
            "--change",
            f"LABEL {KEY_LABEL}={key}",
            "--message",
            f"fresh {debian_mirror.SUITE} root {key}",
            str(tar),
            ref,
        )
        # Older roots of this test (other recipes): only our own repository name.
        tags = podman.podman("images", "--format", "{{.Tag}}", IMAGE, check=False).stdout
        for tag in set(tags.split()) - {key, "<none>"}:
            podman.podman("rmi", f"{IMAGE}:{tag}", check=False)
    return ref


def host_uv_cache() -> Path:
    """The host's uv cache folder (what ``uv cache dir`` says), created if missing."""
    uv = wheelhouse.find_uv()
    folder = None
    if uv is not None:
        done = subprocess.run(
            [uv, "cache", "dir"], capture_output=True, text=True, timeout=60, check=False
        )
        folder = done.stdout.strip() if done.returncode == 0 else None
    if not folder:
        folder = os.environ.get("UV_CACHE_DIR") or str(
            Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "uv"
        )
    path = Path(folder).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def apt_proxy_configs(root: Path = Path("/etc/apt")) -> list[Path]:
    """The host's apt configuration files that set a proxy (passed through read-only)."""
    candidates = [root / "apt.conf"]
    if (root / "apt.conf.d").is_dir():
        candidates += sorted((root / "apt.conf.d").iterdir())
    return [
        path
        for path in candidates
        if path.is_file() and re.search(r"proxy", path.read_text(errors="replace"), re.I)
    ]


def container_network_args() -> list[str]:
    """Host network, the host's CA bundle and proxy settings; nothing of its pip setup."""
    ca_bundle = os.environ.get("SSL_CERT_FILE") or DEFAULT_CA_BUNDLE
    args = ["--network", "host"]
    if Path(ca_bundle).is_file():
        args += ["--volume", f"{ca_bundle}:{ca_bundle}:ro"]
        for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE"):
            args += ["--env", f"{name}={ca_bundle}"]
        args += ["--env", "UV_SYSTEM_CERTS=1"]
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy"):
        if os.environ.get(name):
            args += ["--env", f"{name}={os.environ[name]}"]
    if os.environ.get("no_proxy"):
        args += ["--env", f"no_proxy={os.environ['no_proxy']}"]
    for path in apt_proxy_configs():
        args += ["--volume", f"{path}:{path}:ro"]
    return args


# Runs inside the container: first prove the root is as fresh as promised, then the
# README's command. Exit 97: the root is not fresh (the test's fault, not the repo's).
CONTAINER_SCRIPT = r"""
set -u
fresh() { echo "not a fresh root: $*"; exit 97; }
python3 -c 'import ensurepip' 2>/dev/null && fresh "python3-venv is installed"
python3 -m pip --version >/dev/null 2>&1 && fresh "pip is installed"
command -v uv >/dev/null && fresh "uv is on PATH"
test -e /opt/wheels && fresh "/opt/wheels exists"
echo "fresh root: $(. /etc/os-release; echo "$PRETTY_NAME"), $(python3 --version), no venv/pip/uv"
cd /src
exec make demo
"""


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"minivess-fresh-demo-{uuid.uuid4().hex[:10]}"
    yield name
    podman.podman("rm", "--force", "--time", "5", name, check=False, timeout=120)


def test_make_demo_on_a_fresh_debian_root(tmp_path: Path, container_name: str) -> None:
    started = time.monotonic()
    image = fresh_root_image()
    _log(f"{image} ready after {time.monotonic() - started:.0f} s")

    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "--quiet", str(REPO), str(clone)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    head = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "--short", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert not (clone / ".venv").exists() and not (clone / ".tools").exists()

    cache = host_uv_cache()
    cmd = [
        "run",
        "--name",
        container_name,
        "--rm",
        "--user",
        "root",
        *container_network_args(),
        "--volume",
        f"{cache}:/uv-cache",
        "--env",
        "UV_CACHE_DIR=/uv-cache",
        "--env",
        "UV_LINK_MODE=copy",
        "--volume",
        f"{clone}:/src",
        "--workdir",
        "/src",
        image,
        "bash",
        "-c",
        CONTAINER_SCRIPT,
    ]
    run_started = time.monotonic()
    try:
        done = podman.podman(*cmd, check=False, timeout=2400)
    except commands.ContainerBuildError as error:  # podman missing
        pytest.fail(str(error), pytrace=False)
    except subprocess.TimeoutExpired:
        pytest.fail("make demo in the fresh root ran over 40 minutes", pytrace=False)
    output = done.stdout + done.stderr
    _log(
        f"make demo at {head} (uv cache {cache}): exit {done.returncode} in "
        f"{time.monotonic() - run_started:.0f} s; {time.monotonic() - started:.0f} s in all"
    )
    print(output[-3000:])

    assert done.returncode != 97, output[-2000:]
    assert done.returncode == 0, f"make demo failed in the fresh root:\n{output[-6000:]}"
    assert re.search(r"vessel volume \d+\.\d+ mL", output), output[-3000:]
    outputs = dict(re.findall(r"^\s+(seg|uncertainty_map|sr)\s+(\S+)$", output, re.M))
    assert set(outputs) == {"seg", "uncertainty_map", "sr"}, output[-3000:]
    for kind, path in outputs.items():
        written = clone / path
        assert written.is_file(), f"{kind}: {path} is missing"
        with written.open("rb") as handle:
            assert handle.read(132)[128:] == b"DICM", f"{kind}: {path} is not DICOM Part 10"
    assert "/vessel-seg.dcm" in outputs["seg"]

    site_packages = list((clone / ".venv" / "lib").glob("python3*/site-packages"))
    assert site_packages, "no .venv in the clone"
    assert (site_packages[0] / "onnxruntime").is_dir()
    assert not list(site_packages[0].glob("torch*")), "make demo installed torch"
    assert (clone / ".tools" / "uv" / "bin" / "uv").is_file(), "uv not in its own venv"

    shutil.rmtree(clone, ignore_errors=True)  # ~1.7 GB of .venv; kept when a check fails
