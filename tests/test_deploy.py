"""``airgap/deploy.sh`` with real bundles, a real image and podman, with no network.

One simulated site for the whole module, used in order: a clean install (release 1),
refusals of tampered bundles and of a downgrade (nothing changes, nothing is loaded),
an upgrade (release 2), an unhealthy upgrade (release 3: an image whose entrypoint is
broken) that rolls back with release 2 serving again and the spool intact, then a
manual ``--rollback`` with the deploy.sh the site installed from the bundle.

Why one module: these tests are one scenario, not independent topics. Each starts from
the state the previous one left (the bundles built so far, the releases installed on the
site, the study in its spool), and the site and the bundles are module fixtures that are
costly to make, so splitting the scenario across modules would either break it or build
everything again. The site and the bundles are in tests/deploy_support.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from bundle import image as image_module
from containers import provenance
from synthetic.case import Modality, generate_case
from synthetic.dicom_series import write_series
from tests.deploy_support import (  # the *_fixture names: the module's fixtures
    REPO,
    Bundles,
    Site,
    appliance_fixture,  # noqa: F401
    broken_image_fixture,  # noqa: F401
    bundles_fixture,  # noqa: F401
    compliance_docs_fixture,  # noqa: F401
    release_key_fixture,  # noqa: F401
    site_fixture,  # noqa: F401
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


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
        "airgap", "compliance", "grafana", "helm", "images", "models", "sbom", "smoke"
    }  # fmt: skip
    assert manifest["release"] == 1 and manifest["version"] == provenance.project_version()
    assert manifest["git_commit"].startswith(provenance.git_revision()[:40])
    assert {f["path"] for f in manifest["files"]} == set(names[2:])
    assert "models/minivess-vessel-ensemble/model_card.md" in names  # the card ships
    # The Grafana dashboard ships for a manual import: listed and hashed like every file,
    # the chart's own dashboards/minivess.json (its one source).
    listed = {f["path"]: f["sha256"] for f in manifest["files"]}
    dashboard = REPO / "helm" / "minivess" / "dashboards" / "minivess.json"
    assert listed["grafana/minivess.json"] == hashlib.sha256(dashboard.read_bytes()).hexdigest()
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
