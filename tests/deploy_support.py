"""The simulated site and the bundles that tests/test_deploy.py deploys.

The site (:class:`Site`, fixture ``site``): its own network namespace (``ip netns``;
only loopback and podman's bridge: no route anywhere, every deploy.sh runs inside it
through ``nsenter``), its own podman storage (``CONTAINERS_STORAGE_CONF``: images are
really loaded from the bundle, and the build machine's images are untouched), its own
state folder. The bundles (:class:`Bundles`, fixture ``bundles``) carry the appliance
image as built by ``containers.build`` (cached; the OCI archive and the probe are cached
under var/bundle/cache), signed with a release key made for the module; ``broken_image``
is that image with its entrypoint broken. Missing podman, nsenter or ip fails the tests.

The fixtures are module-scoped and named ``*_fixture`` here: a test module imports every
one of them (``site_fixture`` gives it the ``site`` fixture, and so on).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bundle.build import BuildOptions, BuiltBundle, build_bundle
from containers import commands, images, podman

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "airgap" / "deploy.sh"


def _require(*names: str) -> None:
    for name in names:
        if shutil.which(name) is None and shutil.which(name, path="/usr/sbin:/sbin") is None:
            pytest.fail(f"{name} not found: deploy.sh tests need it (scripts/bootstrap.sh peers)")


# ------------------------------------------------------------------------ bundles


@pytest.fixture(scope="module", name="release_key")
def release_key_fixture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("keys")
    key = Ed25519PrivateKey.generate()
    (folder / "release.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (folder / "release.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return folder / "release.key", folder / "release.pub"


@pytest.fixture(scope="module", name="compliance_docs")
def compliance_docs_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from compliance.gen.render import render

    folder = tmp_path_factory.mktemp("compliance")
    render(folder, None, {})  # the documents; no test collection (checked elsewhere)
    return folder


@pytest.fixture(scope="module", name="appliance")
def appliance_fixture() -> images.BuiltImage:
    _require("podman")
    try:
        return images.build_appliance_image("cpu", log=print)
    except commands.ContainerBuildError as error:
        pytest.fail(f"cannot build the appliance image: {error}", pytrace=False)


@dataclass
class Bundles:
    folder: Path
    options: BuildOptions
    paths: dict[int, Path] = field(default_factory=dict)

    def make(self, release: int, **overrides: Any) -> BuiltBundle:
        built = build_bundle(replace(self.options, release=release, **overrides), log=print)
        print(f"bundle r{release}: {built.size_bytes / 1e6:.0f} MB in {built.seconds:.0f} s")
        self.paths[release] = built.path
        return built


@pytest.fixture(scope="module", name="bundles")
def bundles_fixture(
    tmp_path_factory: pytest.TempPathFactory,
    release_key: tuple[Path, Path],
    compliance_docs: Path,
    appliance: images.BuiltImage,
) -> Bundles:
    folder = tmp_path_factory.mktemp("bundles")
    options = BuildOptions(
        signing_key=release_key[0],
        image_ref=appliance.ref,
        out_dir=folder,
        compliance_dir=compliance_docs,
        keyless="never",
    )
    return Bundles(folder, options)


@pytest.fixture(scope="module", name="broken_image")
def broken_image_fixture(
    appliance: images.BuiltImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The appliance image with its entrypoint broken (a packaging regression): its
    service exits at once. Tagged for this module only, removed afterwards."""
    ref = f"localhost/minivess-appliance:test-broken-{uuid.uuid4().hex[:8]}"
    context = tmp_path_factory.mktemp("broken-image")
    (context / "Containerfile").write_text(
        f"FROM {appliance.image_id}\nUSER 0\n"
        "RUN printf '#!/bin/sh\\necho \"minivess-entrypoint: broken packaging\" >&2\\nexit 70\\n'"
        " > /usr/local/bin/minivess-entrypoint\nUSER 10001:10001\n"
    )
    try:
        podman.podman("build", "--network", "none", "-t", ref, str(context))
        yield ref
    finally:
        shutil.rmtree(context, ignore_errors=True)
        podman.podman("rmi", ref, check=False)


# --------------------------------------------------------------------------- site


@dataclass
class Site:
    root: Path
    netns: str
    name: str
    env: dict[str, str]

    @property
    def home(self) -> Path:
        return self.root / "home"

    def deploy(self, *args: str, script: Path = DEPLOY) -> subprocess.CompletedProcess[str]:
        """deploy.sh as an operator runs it, inside the site's network namespace."""
        cmd = ["nsenter", f"--net=/run/netns/{self.netns}", "bash", str(script)]
        cmd += ["--home", str(self.home), "--name", self.name, "--health-timeout", "120", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=900)
        print(f"$ deploy.sh {' '.join(args)} -> {done.returncode}\n{done.stderr[-3000:]}")
        return done

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["nsenter", f"--net=/run/netns/{self.netns}", "podman", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=300)
        assert not check or done.returncode == 0, done.stderr
        return done

    def dcmtk(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        """dcmtk from the site's network (as a PACS would call the published port)."""
        cmd = ["nsenter", f"--net=/run/netns/{self.netns}", tool, "-aet", "TESTPACS"]
        return subprocess.run(
            [*cmd, "-aec", "MINIVESS", *args], capture_output=True, text=True, timeout=120
        )

    def state(self) -> dict[str, object]:
        return dict(json.loads((self.home / "state.json").read_text()))

    def container(self) -> tuple[str, str, str]:
        """(id, status, release label) of the service container."""
        fmt = '{{.Id}} {{.State.Status}} {{index .Config.Labels "io.minivess.release"}}'
        done = self.podman("container", "inspect", "--format", fmt, self.name, check=False)
        if done.returncode != 0:
            return ("", "missing", "")
        container_id, status, release = done.stdout.split()
        return container_id, status, release

    def images(self) -> list[str]:
        return sorted(self.podman("images", "--format", "{{.ID}} {{.Names}}").stdout.splitlines())

    def snapshot(self) -> dict[str, object]:
        """What a refused deploy must not change (the audit log grows; that is all)."""
        releases = sorted(
            (str(p.relative_to(self.home)), p.stat().st_size)
            for p in (self.home / "releases").rglob("*")
            if p.is_file()
        )
        spool = sorted(str(p) for p in (self.home / "var" / "spool").rglob("*"))
        return {
            "state": (self.home / "state.json").read_bytes(),
            "releases": releases,
            "images": self.images(),
            "container": self.container(),
            "spool": spool,
            "tmp": sorted(os.listdir(self.home / "tmp")),
        }

    def audit(self) -> list[dict[str, object]]:
        log = self.home / "var" / "audit" / "audit.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module", name="site")
def site_fixture(
    tmp_path_factory: pytest.TempPathFactory, release_key: tuple[Path, Path]
) -> Iterator[Site]:
    _require("podman", "nsenter", "ip", "echoscu", "storescu")
    root = tmp_path_factory.mktemp("site")
    netns = f"minivess-test-{uuid.uuid4().hex[:8]}"
    (root / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{root}/storage"\nrunroot = "{root}/run"\n'
    )
    # An operator's environment: no MINIVESS_* of the test session (conftest sets some).
    env = {k: v for k, v in podman.podman_env().items() if not k.startswith("MINIVESS_")}
    env["CONTAINERS_STORAGE_CONF"] = str(root / "storage.conf")
    site = Site(root, netns, f"minivess-test-{uuid.uuid4().hex[:8]}", env)
    site.home.mkdir()
    shutil.copy(release_key[1], site.home / "release-key.pub")  # pinned out of band
    # Site settings for the service: studies stay in the spool (long quiet period).
    (site.home / "site.env").write_text("MINIVESS_QUIET_PERIOD_S=3600\n")
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["nsenter", f"--net=/run/netns/{netns}", "ip", "link", "set", "lo", "up"])
        yield site
    finally:
        for name in (site.name, f"{site.name}-smoke"):
            site.podman("rm", "--force", "--time", "10", name, check=False)
        site.podman("rmi", "--all", "--force", check=False)  # the site's own storage only
        subprocess.run(["ip", "netns", "del", netns], check=False)
        for mount in reversed(Path("/proc/mounts").read_text().splitlines()):
            if str(root) in mount.split()[1]:
                subprocess.run(["umount", "-l", mount.split()[1]], check=False)
        shutil.rmtree(root, ignore_errors=True)
