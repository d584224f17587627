"""``airgap/deploy.sh`` with real bundles, a real image and podman, with no network.

One simulated site for the whole module, used in order: a clean install (release 1),
refusals of tampered bundles and of a downgrade (nothing changes, nothing is loaded),
an upgrade (release 2), an unhealthy upgrade (release 3: an image whose entrypoint is
broken) that rolls back with release 2 serving again and the spool intact, then a
manual ``--rollback`` with the deploy.sh the site installed from the bundle.

The site: its own network namespace (``ip netns``; only loopback and podman's bridge:
no route anywhere, every deploy.sh runs inside it through ``nsenter``), its own podman
storage (``CONTAINERS_STORAGE_CONF``: images are really loaded from the bundle, and the
build machine's images are untouched), its own state folder. The bundles carry the
appliance image as built by ``containers.build`` (cached; the OCI archive and the probe
are cached under var/bundle/cache). Missing podman, nsenter or ip fails these tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bundle import image as image_module
from bundle.build import BuildOptions, BuiltBundle, build_bundle
from containers import commands, images, podman, provenance
from synthetic.case import Modality, generate_case
from synthetic.dicom_series import write_series

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "airgap" / "deploy.sh"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _require(*names: str) -> None:
    for name in names:
        if shutil.which(name) is None and shutil.which(name, path="/usr/sbin:/sbin") is None:
            pytest.fail(f"{name} not found: deploy.sh tests need it (scripts/bootstrap.sh peers)")


# ------------------------------------------------------------------------ bundles


@pytest.fixture(scope="module")
def release_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
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


@pytest.fixture(scope="module")
def compliance_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from compliance.gen.render import render

    folder = tmp_path_factory.mktemp("compliance")
    render(folder, None, {})  # the documents; no test collection (checked elsewhere)
    return folder


@pytest.fixture(scope="module")
def appliance() -> images.BuiltImage:
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


@pytest.fixture(scope="module")
def bundles(
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


@pytest.fixture(scope="module")
def broken_image(
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


@pytest.fixture(scope="module")
def site(
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


def _spool_digest(site: Site) -> dict[str, str]:
    spool = site.home / "var" / "spool"
    return {
        str(p.relative_to(spool)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in spool.rglob("*.dcm")
    }


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m ...`` of this checkout, as a developer runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO, env=env, check=False
    )


def _echo(site: Site) -> None:
    done = site.dcmtk("echoscu", "127.0.0.1", "11112")
    assert done.returncode == 0, done.stderr


# -------------------------------------------------------------------------- tests


@pytest.mark.requirement("SRS-060")
def test_bundle_cli_builds_and_verifies_offline(
    bundles: Bundles, release_key: tuple[Path, Path], compliance_docs: Path
) -> None:
    """``python -m bundle build`` and ``verify``: what the bundle holds, checked."""
    done = _python(
        "-m", "bundle", "build", "--signing-key", str(release_key[0]), "--release", "1",
        "--image", bundles.options.image_ref or "", "--out", str(bundles.folder),
        "--compliance", str(compliance_docs), "--keyless", "never",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    bundle = Path(summary["bundle"])
    print(f"bundle r1: {summary['size_bytes'] / 1e6:.0f} MB in {summary['seconds']} s")
    with tarfile.open(bundle) as archive:
        names = archive.getnames()
        manifest = json.loads(archive.extractfile("manifest.json").read())  # type: ignore[union-attr]
        python_sbom = json.loads(
            archive.extractfile("sbom/python-environment.cdx.json").read()  # type: ignore[union-attr]
        )
    assert names[:2] == ["manifest.json", "manifest.json.sigstore.json"]
    assert {n.split("/")[0] for n in names} >= {
        "airgap", "compliance", "helm", "images", "models", "sbom", "smoke"
    }  # fmt: skip
    assert manifest["release"] == 1 and manifest["version"] == provenance.project_version()
    assert manifest["git_commit"].startswith(provenance.git_revision()[:40])
    assert {f["path"] for f in manifest["files"]} == set(names[2:])
    assert "models/minivess-vessel-ensemble/model_card.md" in names  # the card ships
    for component in python_sbom["components"]:  # the lock's hashes, per distribution
        assert any(ref.get("hashes") for ref in component["externalReferences"]), component
    assert (bundle.parent / f"{bundle.name}.sha256").read_text().split()[0] == summary["sha256"]
    checked = _python("-m", "bundle", "verify", str(bundle), "--public-key", str(release_key[1]))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    expected = ["signature: Ed25519", "no extra, none missing", "sizes and SHA-256"]
    expected += ["holds image", "valid CycloneDX 1.6", "release number: 1", "VERIFIED"]
    for line in expected:
        assert line in checked.stdout
    bundles.paths[1] = bundle


@pytest.mark.requirement("SRS-061", "SRS-077")
def test_clean_install(site: Site, bundles: Bundles) -> None:
    done = site.deploy(str(bundles.paths[1]))
    assert done.returncode == 0, done.stderr
    assert "release 1 is installed and healthy" in done.stderr
    for check in ("C-ECHO", "ready endpoint", "smoke study gave a SEG without dciodvfy errors"):
        assert f"healthy: {check}" in done.stderr
    assert site.state()["current"]["release"] == 1  # type: ignore[index]
    assert site.container()[1:] == ("running", "1")
    _echo(site)
    assert (site.home / "bin" / "deploy.sh").is_file()  # the verified tools, for next time
    assert [(e["action"], e["outcome"]) for e in site.audit()] == [
        ("verify", "success"), ("install", "info"), ("install", "success")
    ]  # fmt: skip
    status = site.deploy("--status")
    assert (
        status.returncode == 0 and "release 1" in status.stdout and "C-ECHO:    ok" in status.stdout
    )


def _tampered(source: Path, target: Path, member: str, how: str) -> Path:
    """A copy of ``source`` with one byte of ``member`` changed."""
    with tarfile.open(source) as archive:
        info = archive.getmember(member)
        data = archive.extractfile(info).read() if info.size < 1 << 20 else b""  # type: ignore[union-attr]
    if how == "release":  # the classic: claim a higher release number
        offset = data.index(b'"release": ') + len(b'"release": ')
        new = ord("9")
    elif how == "signature":  # one base64 character of the signature
        offset = data.index(b'"signature": "') + len(b'"signature": "') + 10
        new = ord("A") if data[offset] != ord("A") else ord("B")
    else:
        offset, new = info.size // 2, -1
    shutil.copyfile(source, target)
    with target.open("r+b") as handle:
        handle.seek(info.offset_data + offset)
        old = handle.read(1)[0]
        handle.seek(info.offset_data + offset)
        handle.write(bytes([new if new >= 0 else old ^ 0x01]))
    return target


REFUSALS = [
    ("models/minivess-vessel-ensemble/unet-a.onnx", "byte", 3, "unet-a.onnx: SHA-256"),
    ("images/minivess-appliance-0.1.0-cpu.oci.tar", "byte", 3, "oci.tar: SHA-256"),
    ("manifest.json", "release", 3, "manifest altered"),
    ("manifest.json.sigstore.json", "signature", 3, "does not verify with the pinned key"),
    (None, "downgrade", 4, "release 1 is not above the installed release 1"),
]


@pytest.mark.requirement("SRS-061", "SRS-077")
@pytest.mark.parametrize(("member", "how", "code", "reason"), REFUSALS)
def test_refused_before_any_change(
    site: Site,
    bundles: Bundles,
    tmp_path: Path,
    member: str | None,
    how: str,
    code: int,
    reason: str,
) -> None:
    if 2 not in bundles.paths:
        bundles.make(2)  # same image, a higher release number
    before = site.snapshot()
    entries = len(site.audit())
    if member is None:
        bundle = bundles.paths[1]  # already installed: not above
    else:
        bundle = _tampered(bundles.paths[2], tmp_path / "tampered.tar", member, how)
    done = site.deploy(str(bundle))
    assert done.returncode == code, done.stderr
    assert reason in done.stderr and "nothing was changed" in done.stderr
    assert site.snapshot() == before  # state, releases, images, container, spool
    (last,) = site.audit()[entries:][-1:]
    assert last["outcome"] == "refused" and reason in last["details"]["problem"]  # type: ignore[index]


@pytest.mark.requirement("SRS-061", "SRS-083")
def test_settings_the_new_release_refuses_change_nothing(
    site: Site, bundles: Bundles, tmp_path: Path
) -> None:
    """A misspelt name in the site's env file stops the upgrade before the switch."""
    if 2 not in bundles.paths:
        bundles.make(2)
    before = site.snapshot()
    env_file = tmp_path / "site.env"
    env_file.write_text("MINIVESS_QUIET_PERIOD=3600\n")
    done = site.deploy("--env-file", str(env_file), str(bundles.paths[2]))
    assert done.returncode == 4, done.stderr
    assert "does not accept the site settings" in done.stderr
    assert "MINIVESS_QUIET_PERIOD (did you mean MINIVESS_QUIET_PERIOD_S?)" in done.stderr
    assert "nothing was changed" in done.stderr
    assert site.snapshot() == before
    assert site.audit()[-1]["outcome"] == "refused"


@pytest.mark.requirement("SRS-060", "SRS-077")
def test_verify_only_changes_nothing(site: Site, bundles: Bundles) -> None:
    before = site.snapshot()
    done = site.deploy("--verify-only", str(bundles.paths[2]))
    assert done.returncode == 0, done.stderr
    assert "ok  sizes and SHA-256" in done.stderr and "nothing was changed" in done.stderr
    assert site.snapshot() == before
    assert site.audit()[-1]["action"] == "verify" and site.audit()[-1]["outcome"] == "success"


@pytest.mark.requirement("SRS-061", "SRS-077")
def test_upgrade(site: Site, bundles: Bundles) -> None:
    old_container = site.container()[0]
    done = site.deploy(str(bundles.paths[2]))
    assert done.returncode == 0, done.stderr
    assert "already loaded" in done.stderr  # same image: nothing to load
    state = site.state()
    assert (state["current"]["release"], state["previous"]["release"]) == (2, 1)  # type: ignore[index]
    container_id, status, release = site.container()
    assert (status, release) == ("running", "2") and container_id != old_container
    _echo(site)
    assert sorted(os.listdir(site.home / "releases")) == ["1", "2"]
    assert site.audit()[-1]["action"] == "install" and site.audit()[-1]["outcome"] == "success"


@pytest.mark.requirement("SRS-061", "SRS-077")
def test_unhealthy_upgrade_rolls_back_keeping_the_spool(
    site: Site, bundles: Bundles, broken_image: str, tmp_path: Path
) -> None:
    # A study arrives (C-STORE through the published port) and waits in the spool.
    study = tmp_path / "study"
    write_series(generate_case(5, Modality.CT), study)
    sent = site.dcmtk("storescu", "127.0.0.1", "11112", *map(str, sorted(study.iterdir())))
    assert sent.returncode == 0, sent.stderr
    spooled = _spool_digest(site)
    assert len(spooled) == len(list(study.iterdir()))
    image_id = site.state()["current"]["image_id"]  # type: ignore[index]
    broken = bundles.make(3, image_ref=broken_image, cache_dir=tmp_path / "cache")
    done = site.deploy(str(broken.path))
    assert done.returncode == 5, done.stderr
    assert "release 3 is unhealthy" in done.stderr and "rolled back to release 2" in done.stderr
    # Release 2 serves again, on the same spool and journal, and nothing was lost.
    state = site.state()
    assert state["current"]["release"] == 2 and state["current"]["image_id"] == image_id  # type: ignore[index]
    assert site.container()[1:] == ("running", "2")
    _echo(site)
    assert _spool_digest(site) == spooled
    jobs = json.loads(
        site.podman("exec", site.name, "python3", "-m", "service", "jobs", "--json").stdout
    )
    assert [(j["state"], j["instances"]) for j in jobs] == [("received", len(spooled))]
    assert sorted(os.listdir(site.home / "releases")) == ["1", "2"]
    assert not any(broken.manifest.image.id[:12] in line for line in site.images())
    (log,) = (site.home / "logs").glob("release-3-*.log")
    assert "broken packaging" in log.read_text()
    actions = [(e["action"], e["outcome"], e["resource"]) for e in site.audit()[-4:]]
    assert actions == [
        ("verify", "success", "release:3"), ("install", "info", "release:3"),
        ("install", "failure", "release:3"), ("rollback", "success", "release:2"),
    ]  # fmt: skip
    image_module.clear_cache(tmp_path / "cache", broken.manifest.image.id)


@pytest.mark.requirement("SRS-061", "SRS-077")
def test_manual_rollback_with_the_installed_tools(site: Site) -> None:
    spooled = _spool_digest(site)
    done = site.deploy("--rollback", script=site.home / "bin" / "deploy.sh")
    assert done.returncode == 0, done.stderr
    assert "rolled back from release 2 to release 1" in done.stderr
    state = site.state()
    assert (state["current"]["release"], state["previous"]["release"]) == (1, 2)  # type: ignore[index]
    assert site.container()[1:] == ("running", "1")
    _echo(site)
    assert _spool_digest(site) == spooled
    status = site.deploy("--status")
    assert "current:   release 1" in status.stdout and "previous:  release 2" in status.stdout
    # Every step is in the site's audit log, and the log verifies (with the real tool).
    verified = _python("-m", "compliance.audit", "verify", str(site.home / "var/audit/audit.jsonl"))
    assert verified.returncode == 0 and "INTACT" in verified.stdout, verified.stdout
    deploy_actions = {
        (e["action"], e["outcome"]) for e in site.audit() if e["actor"] == "deploy.sh"
    }
    assert deploy_actions >= {
        ("verify", "success"), ("verify", "refused"), ("install", "refused"),
        ("install", "success"), ("install", "failure"), ("rollback", "success"),
    }  # fmt: skip
