"""MAP manifests: committed files match the generator; both forms parse alike; bad ones fail."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from map_app.manifest_schema import ApplicationManifest, PackageManifest
from map_app.manifests import (
    MapDescription,
    main,
    render_app_json,
    render_app_yaml,
    render_pkg_json,
    stale,
)

ROOT = Path(__file__).resolve().parents[1]
APP_JSON = ROOT / "map_app" / "map_manifests" / "app.json"
PKG_JSON = ROOT / "map_app" / "map_manifests" / "pkg.json"
APP_YAML = ROOT / "map_app" / "app.yaml"

ENV_NAMES = [
    "HOLOSCAN_APPLICATION",
    "HOLOSCAN_INPUT_PATH",
    "HOLOSCAN_OUTPUT_PATH",
    "HOLOSCAN_WORKDIR",
    "HOLOSCAN_MODEL_PATH",
    "HOLOSCAN_CONFIG_PATH",
    "HOLOSCAN_APP_MANIFEST_PATH",
    "HOLOSCAN_PKG_MANIFEST_PATH",
    "HOLOSCAN_DOCS_PATH",
    "HOLOSCAN_LOGS_PATH",
]

# The same application in the MAP spec's form (monai-deploy guidelines/monai-application-package.md)
APP_SPEC_FORM = """{
  "apiVersion": "1.0.0",
  "command": "python3 -m map_app --flag 'two words'",
  "environment": {"HOLOSCAN_INPUT_PATH": "/var/holoscan/input"},
  "input": {"path": "input/", "formats": ["dicom"]},
  "output": {"path": "output/", "format": ["dicom-seg", "json"]},
  "readiness": {"type": "http-get", "port": 8080, "path": "/healthz"},
  "sdk": "monai-deploy",
  "sdkVersion": "4.0.0",
  "timeout": 600,
  "version": "1.2.3",
  "workingDirectory": "/var/holoscan/"
}"""
# ... and as holoscan-cli's packager writes it (JSON-encoded command, "formats", nulls).
APP_PACKAGER_FORM = """{
  "apiVersion": "1.0.0",
  "command": "[\\"python3\\", \\"-m\\", \\"map_app\\", \\"--flag\\", \\"two words\\"]",
  "environment": {"HOLOSCAN_INPUT_PATH": "/var/holoscan/input"},
  "input": {"path": "input/", "formats": "dicom"},
  "liveness": null,
  "output": {"path": "output/", "formats": ["dicom-seg", "json"]},
  "readiness": {"type": "http-get", "port": 8080, "path": "/healthz", "initialDelaySeconds": 1,
                "periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3},
  "sdk": "monai-deploy",
  "sdkVersion": "4.0.0",
  "timeout": 600,
  "version": "1.2.3",
  "workingDirectory": "/var/holoscan"
}"""
PKG_SPEC_FORM = """{
  "apiVersion": "1.0.0",
  "applicationRoot": "/opt/holoscan/app/",
  "modelRoot": "/opt/holoscan/models/",
  "models": [{"name": "seg", "path": "seg-v1"}, {"name": "cls"}],
  "resources": {"cpu": 1.5, "gpu": 1, "memory": "1.5Gi", "gpuMemory": "2048Mi",
                "fragments": {"infer": {"cpu": 1, "sharedMemory": "64Mi"}}},
  "version": "1.2.3"
}"""
PKG_PACKAGER_FORM = """{
  "apiVersion": "1.0.0",
  "applicationRoot": "/opt/holoscan/app",
  "modelRoot": "/opt/holoscan/models",
  "models": {"seg": "/opt/holoscan/models/seg-v1", "cls": "/opt/holoscan/models/cls"},
  "resources": {"cpu": 1.5, "gpu": 1.0, "memory": 1610612736, "gpuMemory": "2GiB",
                "fragments": {"infer": {"cpu": 1.0, "sharedMemory": "64MiB"}}},
  "version": "1.2.3",
  "platformConfig": "dgpu"
}"""


def _messages(error: pytest.ExceptionInfo[ValidationError]) -> str:
    return "\n".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.value.errors())


@pytest.mark.requirement("SRS-024")
def test_committed_files_match_the_generator() -> None:
    assert APP_JSON.read_text() == render_app_json()
    assert PKG_JSON.read_text() == render_pkg_json()
    assert APP_YAML.read_text() == render_app_yaml()
    assert stale() == []


@pytest.mark.requirement("SRS-024")
def test_check_reports_stale_and_write_fixes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--write", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.json", "app.yaml", "pkg.json"]
    assert main(["--check", str(tmp_path)]) == 0
    (tmp_path / "pkg.json").write_text(render_pkg_json().replace('"8Gi"', '"4Gi"'))
    capsys.readouterr()
    assert main(["--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert '-    "memory": "4Gi"' in err and '+    "memory": "8Gi"' in err
    assert "stale" in err


@pytest.mark.requirement("SRS-024")
def test_cli_check_of_committed_layout_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "map_app.manifests", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.requirement("SRS-024")
def test_committed_manifests_parse_back() -> None:
    desc = MapDescription()
    app = ApplicationManifest.model_validate_json(APP_JSON.read_text())
    pkg = PackageManifest.model_validate_json(PKG_JSON.read_text())
    assert app == desc.app_manifest() and pkg == desc.pkg_manifest()
    assert app.command == ["python3", "-m", "map_app"]
    assert app.input.formats == ["dicom", "nifti"]
    assert app.output.formats == ["dicom-seg", "dicom-pm", "dicom-sr", "json", "nifti"]
    assert app.input.path == "/var/holoscan/input" and app.output.path == "/var/holoscan/output"
    assert pkg.application_root == "/opt/holoscan/app"
    assert [(m.name, m.path) for m in pkg.models] == [
        ("minivess-vessel-ensemble", "/opt/holoscan/models/minivess-vessel-ensemble")
    ]
    assert pkg.resources is not None
    assert (pkg.resources.cpu, pkg.resources.gpu, pkg.resources.memory) == (2, 0, "8Gi")
    # the packager's on-disk shapes
    raw_app, raw_pkg = json.loads(APP_JSON.read_text()), json.loads(PKG_JSON.read_text())
    assert json.loads(raw_app["command"]) == ["python3", "-m", "map_app"]
    assert raw_app["liveness"] is None and raw_app["readiness"] is None
    assert raw_pkg["models"] == {
        "minivess-vessel-ensemble": "/opt/holoscan/models/minivess-vessel-ensemble"
    }


@pytest.mark.requirement("SRS-024")
def test_environment_names_present() -> None:
    env = json.loads(APP_JSON.read_text())["environment"]
    assert list(env) == ENV_NAMES
    assert env["HOLOSCAN_APP_MANIFEST_PATH"] == "/etc/holoscan/app.json"
    assert env["HOLOSCAN_PKG_MANIFEST_PATH"] == "/etc/holoscan/pkg.json"
    assert env["HOLOSCAN_MODEL_PATH"] == "/opt/holoscan/models"


@pytest.mark.requirement("SRS-024")
def test_versions_come_from_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    version = project["version"]
    assert json.loads(APP_JSON.read_text())["version"] == version
    assert json.loads(PKG_JSON.read_text())["version"] == version
    assert f"  version: {json.dumps(version)}\n" in APP_YAML.read_text()
    assert (
        f"monai-deploy-app-sdk=={json.loads(APP_JSON.read_text())['sdkVersion']}"
        in (project["dependencies"])
    )


@pytest.mark.requirement("SRS-024")
def test_app_yaml_shape() -> None:
    text = APP_YAML.read_text()
    assert text.startswith("# Generated by")
    assert 'inputFormats: ["dicom", "nifti"]' in text
    assert '  memory: "8Gi"\n' in text and "  cpu: 2\n" in text
    assert "\t" not in text


@pytest.mark.requirement("SRS-024")
def test_both_app_forms_normalise_alike() -> None:
    spec = ApplicationManifest.model_validate_json(APP_SPEC_FORM)
    packager = ApplicationManifest.model_validate_json(APP_PACKAGER_FORM)
    assert spec == packager
    assert spec.command == ["python3", "-m", "map_app", "--flag", "two words"]
    assert spec.input.formats == ["dicom"] and spec.working_directory == "/var/holoscan"
    for form in ("packager", "spec"):
        assert ApplicationManifest.model_validate(spec.dump(form)) == spec
    assert spec.dump("spec")["output"] == {"path": "output/", "format": ["dicom-seg", "json"]}
    assert spec.dump("spec")["command"] == "python3 -m map_app --flag 'two words'"


@pytest.mark.requirement("SRS-024")
def test_null_formats_and_defaults() -> None:
    app = ApplicationManifest.model_validate(
        {"command": ["x"], "input": {"path": "input/", "formats": None}}
    )
    assert app.input.formats is None and app.output.path == "output/"
    assert app.version == "0.0.0" and app.timeout == 0


@pytest.mark.requirement("SRS-024")
def test_both_pkg_forms_normalise_alike() -> None:
    spec = PackageManifest.model_validate_json(PKG_SPEC_FORM)
    packager = PackageManifest.model_validate_json(PKG_PACKAGER_FORM)
    assert spec.model_dump(exclude={"platform_config"}) == packager.model_dump(
        exclude={"platform_config"}
    )
    assert [(m.name, m.path) for m in spec.models] == [
        ("seg", "/opt/holoscan/models/seg-v1"),
        ("cls", "/opt/holoscan/models/cls"),
    ]
    assert spec.resources is not None and spec.resources.fragments is not None
    assert (spec.resources.memory, spec.resources.gpu_memory) == ("1536Mi", "2Gi")
    assert spec.resources.fragments["infer"].shared_memory == "64Mi"
    assert spec.dump("spec")["models"] == [
        {"name": "seg", "path": "seg-v1"},
        {"name": "cls", "path": "cls"},
    ]
    assert PackageManifest.model_validate(packager.dump("spec")) == spec
    assert PackageManifest.model_validate(packager.dump("packager")) == packager


def _app(**changes: Any) -> dict[str, Any]:
    data = json.loads(APP_JSON.read_text())
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}


def _pkg(**resources: Any) -> dict[str, Any]:
    data = json.loads(PKG_JSON.read_text())
    data["resources"] = {**data["resources"], **resources}
    return data


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_app(command=...), "command: Field required"),
        (_app(command="[]"), "command: List should have at least 1 item"),
        (_app(command='["python3", '), "command is not a JSON string list"),
        (_app(command=["python3", " "]), "command words must not be empty"),
        (_app(environment={"BAD-NAME": "1"}), "invalid environment variable names: ['BAD-NAME']"),
        (_app(version="latest"), "'latest' is not a semantic version"),
        (_app(workingDirectory="var/holoscan"), "'var/holoscan' must be an absolute path"),
        (_app(timeout=-1), "timeout: Input should be greater than or equal to 0"),
        (_app(readiness={"type": "tcp"}), "a 'tcp' probe needs a port"),
        (_app(surprise=1), "surprise: Extra inputs are not permitted"),
    ],
)
@pytest.mark.requirement("SRS-024")
def test_invalid_app_manifests_are_rejected(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as error:
        ApplicationManifest.model_validate(data)
    assert expected in _messages(error)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_pkg(cpu=-1), "resources.cpu: Value error, must be positive, got -1"),
        (_pkg(cpu=0), "resources.cpu: Value error, must be positive, got 0"),
        (_pkg(cpu=3.14), "3.14 must be rounded to the nearest tenth"),
        (_pkg(gpu=-0.5), "resources.gpu: Value error, must be zero or more"),
        (_pkg(cpu="2"), "resources.cpu: Value error, '2' is not a number"),
        (_pkg(memory="8 gigs"), "resources.memory: Value error, '8 gigs' is not a memory size"),
        (_pkg(memory="-8Gi"), "'-8Gi' is not a memory size"),
        (_pkg(memory=1000), "memory size 1000 must be a positive whole number of MiB"),
        (_pkg(memroy="8Gi"), "resources.memroy: Extra inputs are not permitted"),
        ({"models": [{"name": "a b"}]}, "models.0.name: String should match pattern"),
        ({"models": [{"name": "a"}, {"name": "a"}]}, "duplicate model names: ['a', 'a']"),
        ({"modelRoot": "models/"}, "'models/' must be an absolute path"),
    ],
)
@pytest.mark.requirement("SRS-024")
def test_invalid_pkg_manifests_are_rejected(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as error:
        PackageManifest.model_validate(data)
    assert expected in _messages(error)
