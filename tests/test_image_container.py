"""The appliance image, built and run with podman (as root, offline).

One build per session (``containers.build.build_appliance_image``: the mmdebstrap base,
the wheelhouse and the image are cached under var/containers and reused while their
inputs are unchanged). Cold on 2 cores: ~1 min base, ~15 s wheelhouse, ~2-2.5 min
build; warm: a few seconds. Missing podman fails these tests; they never skip.
Only containers these tests start are stopped and removed, by name.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from containers import commands, images, provenance
from containers.podman import podman as run_podman
from models.digest import sha256_file
from tests.peers import assert_dicom_valid, echoscu, free_port, storescu

REPO = Path(__file__).resolve().parents[1]
# The first test waits for a cold build (~4 min on 2 cores) inside its timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


@pytest.fixture(scope="session")
def appliance_image() -> images.BuiltImage:
    """The CPU appliance image, built (or found current) once per test session."""
    try:
        return images.build_appliance_image("cpu", log=lambda message: print(message))
    except commands.ContainerBuildError as error:
        pytest.fail(f"cannot build the appliance image: {error}", pytrace=False)


@pytest.fixture(scope="session")
def ct_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study") / "ct"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "synthetic",
            "dicom",
            "--seed",
            "3",
            "--modality",
            "CT",
            "--out",
            str(out),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    assert len(list(out.glob("*.dcm"))) > 10
    return out


def podman(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``podman ARGS`` with the repository's containers.conf; never raises on exit status."""
    try:
        return run_podman(*args, check=False, timeout=timeout)
    except commands.ContainerBuildError as error:  # podman missing
        pytest.fail(str(error), pytrace=False)


def writable_dir(path: Path) -> Path:
    """A host folder the container's user (uid 10001) can write."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


@pytest.fixture
def container_name() -> Iterator[str]:
    """A unique name for one test's container; removed afterwards (only that one)."""
    name = f"minivess-test-{uuid.uuid4().hex[:10]}"
    yield name
    podman("rm", "--force", "--time", "5", name, timeout=60)


# Hardened run options: what the Helm chart and deploy.sh run the appliance with.
HARDENED = [
    "--read-only",
    "--tmpfs",
    "/tmp:rw,size=512m",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
]


@pytest.mark.requirement("SRS-062")
def test_image_metadata_user_and_labels(appliance_image: images.BuiltImage) -> None:
    inspect = json.loads(podman("image", "inspect", appliance_image.ref).stdout)[0]
    config = inspect["Config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"]
    assert labels["org.opencontainers.image.version"] == provenance.project_version()
    # The commit and its time at build (this session; both are inputs of the image digest).
    assert labels["org.opencontainers.image.revision"] == appliance_image.revision
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", appliance_image.revision)
    assert labels["org.opencontainers.image.created"] == appliance_image.created
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", appliance_image.created)
    assert labels[images.INPUTS_LABEL] == appliance_image.inputs_digest
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["/usr/local/bin/minivess-entrypoint"]
    env = dict(item.split("=", 1) for item in config["Env"])
    manifest = json.loads((REPO / "map_app/map_manifests/app.json").read_text())
    for name, value in manifest["environment"].items():
        assert env[name] == value
    assert env["MINIVESS_CODE_VERSION"] == appliance_image.revision
    assert {"11112/tcp", "3000/tcp"} <= set(config.get("ExposedPorts", {}))


INSIDE = r"""
import hashlib, json, os, pathlib, resource
def sha(p): return hashlib.sha256(pathlib.Path(p).read_bytes()).hexdigest()
models = pathlib.Path("/opt/holoscan/models/minivess-vessel-ensemble")
try:
    pathlib.Path("/opt/holoscan/app/probe").write_text("x"); root_writable = True
except OSError:
    root_writable = False
import holoscan, onnxruntime
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(),
    "stack": resource.getrlimit(resource.RLIMIT_STACK)[0],
    "app_json": sha("/etc/holoscan/app.json"), "pkg_json": sha("/etc/holoscan/pkg.json"),
    "app_yaml": sha("/var/holoscan/app.yaml"),
    "models": {p.name: sha(p) for p in models.iterdir() if p.is_file()},
    "dirs": {d: os.path.isdir(d) for d in ("/opt/holoscan/app/map_app", "/var/holoscan/input",
             "/var/holoscan/output", "/var/lib/minivess")},
    "root_writable": root_writable,
    "providers": onnxruntime.get_available_providers(),
    "no_torch": __import__("importlib.util").util.find_spec("torch") is None,
}))
"""


@pytest.mark.requirement("SRS-062")
def test_image_layout_non_root_read_only(appliance_image: images.BuiltImage) -> None:
    done = podman(
        "run", "--rm", "--network", "none", *HARDENED, appliance_image.ref, "python3", "-c", INSIDE
    )
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert (facts["uid"], facts["gid"]) == (10001, 10001)
    assert facts["stack"] == 32 * 2**20  # the entrypoint raised it for Holoscan
    repo_sha = sha256_file
    assert facts["app_json"] == repo_sha(REPO / "map_app/map_manifests/app.json")
    assert facts["pkg_json"] == repo_sha(REPO / "map_app/map_manifests/pkg.json")
    assert facts["app_yaml"] == repo_sha(REPO / "map_app/app.yaml")
    shipped = {p.name: repo_sha(p) for p in (REPO / "models/ensemble").iterdir() if p.is_file()}
    assert facts["models"] == shipped
    assert all(facts["dirs"].values()), facts["dirs"]
    assert not facts["root_writable"]
    assert "OpenVINOExecutionProvider" in facts["providers"]
    assert facts["no_torch"]


@pytest.mark.requirement("SRS-062")
def test_map_batch_job_offline_read_only(
    appliance_image: images.BuiltImage, ct_study: Path, tmp_path: Path
) -> None:
    """The MAP convention: input and output mounted at /var/holoscan, no arguments."""
    out = writable_dir(tmp_path / "out")
    started = time.monotonic()
    done = podman(
        "run",
        "--rm",
        "--network",
        "none",
        *HARDENED,
        "-v",
        f"{ct_study}:/var/holoscan/input:ro",
        "-v",
        f"{out}:/var/holoscan/output",
        appliance_image.ref,
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "done"
    assert "OpenVINOExecutionProvider" in report["model"]["providers"]
    (series,) = report["series"]
    seg = out / series["series_instance_uid"] / "vessel-seg.dcm"
    assert_dicom_valid(seg)
    print(f"MAP batch job in the container: {seconds:.1f} s")


def test_map_exit_codes_pass_through_the_entrypoint(
    appliance_image: images.BuiltImage, tmp_path: Path
) -> None:
    empty = writable_dir(tmp_path / "empty")
    out = writable_dir(tmp_path / "out")
    done = podman(
        "run",
        "--rm",
        "--network",
        "none",
        *HARDENED,
        "-v",
        f"{empty}:/var/holoscan/input:ro",
        "-v",
        f"{out}:/var/holoscan/output",
        appliance_image.ref,
    )
    assert done.returncode == 10, done.stdout + done.stderr  # no image series
    assert "Traceback" not in done.stderr


def _start_service(
    image: str, name: str, var: Path, port: int
) -> tuple[str, subprocess.CompletedProcess[str]]:
    """Start ``serve`` with the DICOM port published on 127.0.0.1 only; where publishing
    is not possible, on the host network bound to 127.0.0.1. Returns the mode used."""
    common = [
        "run",
        "--detach",
        "--name",
        name,
        *HARDENED,
        "-v",
        f"{var}:/var/lib/minivess",
        "-e",
        "MINIVESS_QUIET_PERIOD_S=1",
    ]
    done = podman(*common, "-p", f"127.0.0.1:{port}:11112", image, "serve")
    if done.returncode == 0:
        return "published", done
    podman("rm", "--force", name, timeout=60)
    done = podman(
        *common,
        "--network",
        "host",
        "-e",
        "MINIVESS_DICOM_HOST=127.0.0.1",
        "-e",
        f"MINIVESS_DICOM_PORT={port}",
        image,
        "serve",
    )
    return "host", done


def _wait_for_echo(port: int, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            echoscu("127.0.0.1", port, "MINIVESS", timeout=10)
            return
        except AssertionError:
            state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            if state != "running" or time.monotonic() > deadline:
                logs = podman("logs", "--tail", "40", name)
                pytest.fail(f"service container {state}, no C-ECHO:\n{logs.stdout}{logs.stderr}")
            time.sleep(1)


@pytest.mark.requirement("SRS-062")
def test_service_container_answers_echo_and_segments_a_stored_study(
    appliance_image: images.BuiltImage, ct_study: Path, tmp_path: Path, container_name: str
) -> None:
    var = writable_dir(tmp_path / "var")
    port = free_port()
    mode, done = _start_service(appliance_image.ref, container_name, var, port)
    assert done.returncode == 0, done.stderr
    _wait_for_echo(port, container_name)
    echo = echoscu("127.0.0.1", port, "MINIVESS")
    assert echo.returncode == 0
    storescu("127.0.0.1", port, "MINIVESS", ct_study)
    deadline = time.monotonic() + 180
    segs: list[Path] = []
    while not segs and time.monotonic() < deadline:
        time.sleep(1)
        segs = sorted((var / "outputs").rglob("vessel-seg.dcm"))
    logs = podman("logs", container_name)
    assert segs, f"no SEG from the service ({mode}):\n{logs.stdout}{logs.stderr}"
    assert_dicom_valid(segs[0])
    # A clean stop on SIGTERM (what Kubernetes and deploy.sh send).
    stopped = podman("stop", "--time", "60", container_name, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    code = podman("inspect", "--format", "{{.State.ExitCode}}", container_name).stdout.strip()
    assert code == "0", podman("logs", "--tail", "40", container_name).stderr
