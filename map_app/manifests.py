"""The MAP manifests (``app.json``, ``pkg.json``) and the SDK's ``app.yaml``, from one source.

``MapDescription`` is the single source of truth; ``render_app_json``, ``render_pkg_json`` and
``render_app_yaml`` derive the three files from it, and ``python -m map_app.manifests --write``
/ ``--check`` regenerate or verify the committed copies (``map_app/app.yaml``,
``map_app/map_manifests/app.json``, ``map_app/map_manifests/pkg.json``).

``ApplicationManifest`` and ``PackageManifest`` read both forms found in the wild and normalise
them; ``dump(form=...)`` writes either form back.

* MAP spec form, from Project-MONAI/monai-deploy ``guidelines/monai-application-package.md``
  (tables of Application/Package Manifest fields, environment variables, important paths):
  ``command`` a shell command string, ``output.format``, ``models`` a list of ``{name, path}``
  with ``path`` relative to ``modelRoot``, memory sizes like ``"1.5Gi"``/``"2048Mi"``, cpu/gpu
  positive decimals rounded to a tenth.
* Packager form, written by nvidia-holoscan/holoscan-cli ``src/holoscan_cli/packager/``
  (``manifest_files.py``, ``config_reader.py``, ``parameters.py``, ``arguments.py``,
  ``common/constants.py``): ``command`` a JSON-encoded string list (``'["python3", ...]'``),
  ``output.formats``, ``formats`` null (it reads ``input-formats`` from app.yaml, so the
  camelCase ``inputFormats`` of the SDK's examples never reach app.json), ``models`` a dict
  name -> absolute path, ``resources`` copied verbatim from app.yaml, ``platformConfig``,
  paths written through ``str(Path)`` (no trailing slash). Its runner
  (``runner/resources.py``) reads a bare number as bytes and units Mi/MiB/Gi/GiB/MB/GB.
* ``app.yaml`` as in Project-MONAI/monai-deploy-app-sdk
  ``examples/apps/ai_spleen_seg_app/app.yaml`` (``application: title, version, inputFormats,
  outputFormats``; ``resources: cpu, gpu, memory, gpuMemory``).
* The SDK reads HOLOSCAN_INPUT_PATH / OUTPUT_PATH / MODEL_PATH / WORKDIR at run time
  (installed ``monai/deploy/core/runtime_env.py``).
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import posixpath
import re
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

Form = Literal["packager", "spec"]
_GI, _MI = 1 << 30, 1 << 20
_UNITS = {"Gi": _GI, "GiB": _GI, "Mi": _MI, "MiB": _MI, "GB": 10**9, "MB": 10**6}
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)\s*(GiB|Gi|MiB|Mi|GB|MB)$")
_SEMVER = re.compile(r"^\d+\.\d+(?:\.\d+)?(?:[-+][0-9A-Za-z.+-]+)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
REPO_ROOT = Path(__file__).resolve().parents[1]


def _memory(value: Any) -> str:
    """A memory size, normalised to whole ``Gi`` or ``Mi`` (bare numbers are bytes)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        size = float(value)
    else:
        match = _MEMORY.match(str(value).strip()) if isinstance(value, str) else None
        if match is None:
            raise ValueError(
                f"{value!r} is not a memory size: use a number with unit Mi or Gi "
                "(e.g. '8Gi', '2048Mi') or a number of bytes"
            )
        size = float(match[1]) * _UNITS[match[2]]
    if size <= 0 or size % _MI:
        raise ValueError(f"memory size {value!r} must be a positive whole number of MiB")
    return f"{int(size // _GI)}Gi" if size % _GI == 0 else f"{int(size // _MI)}Mi"


def _count(value: Any, *, positive: bool) -> int | float:
    """cpu/gpu counts: numbers, rounded to a tenth (spec); integral values become ints."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a number")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"must be {'positive' if positive else 'zero or more'}, got {value}")
    if abs(value * 10 - round(value * 10)) > 1e-9:
        raise ValueError(f"{value} must be rounded to the nearest tenth")
    return int(value) if float(value).is_integer() else float(value)


def _version(value: Any) -> str:
    text = str(value)  # app.yaml's `version: 1.0` arrives as a float
    if not _SEMVER.match(text):
        raise ValueError(f"{text!r} is not a semantic version")
    return text


def _absolute(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"{value!r} must be an absolute path")
    return posixpath.normpath(value)


Memory = Annotated[str, BeforeValidator(_memory)]
Cores = Annotated[int | float, BeforeValidator(lambda v: _count(v, positive=True))]
Devices = Annotated[int | float, BeforeValidator(lambda v: _count(v, positive=False))]
Version = Annotated[str, BeforeValidator(_version)]
AbsPath = Annotated[str, BeforeValidator(_absolute)]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class Resources(_Model):
    """``pkg.json#resources`` (and app.yaml ``resources``), incl. per-fragment overrides."""

    cpu: Cores | None = None
    cpu_limit: Cores | None = None
    gpu: Devices | None = None
    gpu_limit: Devices | None = None
    memory: Memory | None = None
    memory_limit: Memory | None = None
    gpu_memory: Memory | None = None
    gpu_memory_limit: Memory | None = None
    shared_memory: Memory | None = None
    shared_memory_limit: Memory | None = None
    fragments: dict[str, Resources] | None = None


class Probe(_Model):
    """``app.json#readiness`` / ``#liveness``."""

    type: Literal["tcp", "grpc", "http-get", "command"]
    command: list[str] | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    path: str | None = None
    initial_delay_seconds: int = Field(default=1, ge=0)
    period_seconds: int = Field(default=10, ge=1)
    timeout_seconds: int = Field(default=1, ge=1)
    failure_threshold: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _required_for_type(self) -> Probe:
        if self.type == "command" and not self.command:
            raise ValueError("a 'command' probe needs a non-empty command")
        if self.type != "command" and self.port is None:
            raise ValueError(f"a {self.type!r} probe needs a port")
        if self.type == "http-get" and not (self.path or "").startswith("/"):
            raise ValueError("an 'http-get' probe needs an absolute path")
        return self


class DataSpec(_Model):
    """``app.json#input`` / ``#output``: ``formats`` (packager) or ``format`` (spec)."""

    path: str
    formats: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _either_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "format" in data:
            if "formats" in data:
                raise ValueError("give either 'format' or 'formats', not both")
            data = {**data, "formats": data["format"]}
            del data["format"]
        return data

    @field_validator("formats", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class ApplicationManifest(_Model):
    """``/etc/holoscan/app.json``."""

    api_version: Version = "0.0.0"
    type: Literal["service", "application"] | None = None  # in the spec's prose, not its table
    command: list[str] = Field(min_length=1)
    environment: dict[str, str] = {}
    input: DataSpec = DataSpec(path="input/")
    output: DataSpec = DataSpec(path="output/")
    readiness: Probe | None = None
    liveness: Probe | None = None
    sdk: str | None = None
    sdk_version: Version | None = None
    timeout: int = Field(default=0, ge=0)
    version: Version = "0.0.0"
    working_directory: AbsPath = "/var/holoscan"

    @field_validator("command", mode="before")
    @classmethod
    def _split_command(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):  # the packager's JSON-encoded exec form
            try:
                return json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"command is not a JSON string list: {error}") from None
        return shlex.split(value)  # the spec's shell command

    @field_validator("command")
    @classmethod
    def _no_empty_words(cls, value: list[str]) -> list[str]:
        if not all(word.strip() for word in value):
            raise ValueError("command words must not be empty")
        return value

    @field_validator("environment", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return {} if value is None else value
        bad = [name for name in value if not _ENV_NAME.match(str(name))]
        if bad:
            raise ValueError(f"invalid environment variable names: {bad}")
        return {str(name): str(val) for name, val in value.items()}

    def dump(self, form: Form = "packager") -> dict[str, Any]:
        """Packager form: JSON-encoded command, ``output.formats``; spec form: shell command,
        ``output.format``. Keys in the packager's order."""

        def probe(value: Probe | None) -> dict[str, Any] | None:
            return None if value is None else value.model_dump(by_alias=True, exclude_none=True)

        data: dict[str, Any] = {
            "apiVersion": self.api_version,
            "command": json.dumps(self.command) if form == "packager" else shlex.join(self.command),
            "environment": dict(self.environment),
            "input": {"path": self.input.path, "formats": self.input.formats},
            "liveness": probe(self.liveness),
            "output": {
                "path": self.output.path,
                "formats" if form == "packager" else "format": self.output.formats,
            },
            "readiness": probe(self.readiness),
            "sdk": self.sdk,
            "sdkVersion": self.sdk_version,
            "timeout": self.timeout,
            "version": self.version,
            "workingDirectory": self.working_directory,
        }
        if self.type is not None:
            data["type"] = self.type
        return data


class ModelEntry(_Model):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[^\s\x00-\x1f\x7f]+$")
    path: str | None = None


class PackageManifest(_Model):
    """``/etc/holoscan/pkg.json``; model paths are normalised to absolute paths."""

    api_version: Version = "0.0.0"
    application_root: AbsPath = "/opt/holoscan/app"
    model_root: AbsPath = "/opt/holoscan/models"
    models: list[ModelEntry] = []
    resources: Resources | None = None
    version: Version = "0.0.0"
    platform_config: str | None = None  # packager only: "dgpu", "igpu", ...

    @model_validator(mode="before")
    @classmethod
    def _absolute_model_paths(cls, data: Any) -> Any:
        """Models as a list of {name, path} or a dict name -> path; paths made absolute."""
        if not isinstance(data, dict):
            return data
        models = data.get("models")
        if isinstance(models, dict):  # packager form
            models = [{"name": name, "path": path} for name, path in models.items()]
        root = data.get("modelRoot", data.get("model_root", "/opt/holoscan/models"))
        if not isinstance(models, list) or not isinstance(root, str):
            return data if models is None else {**data, "models": models}
        entries = []
        for entry in models:
            entry = entry.model_dump() if isinstance(entry, ModelEntry) else entry
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                path = entry.get("path") or entry["name"]
                if isinstance(path, str):  # relative paths are relative to modelRoot (spec)
                    entry = {**entry, "path": posixpath.normpath(posixpath.join(root, path))}
            entries.append(entry)
        return {**data, "models": entries}

    @field_validator("models")
    @classmethod
    def _unique_names(cls, value: list[ModelEntry]) -> list[ModelEntry]:
        names = [model.name for model in value]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate model names: {names}")
        return value

    def dump(self, form: Form = "packager") -> dict[str, Any]:
        data = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        if form == "packager":
            data["models"] = {m.name: m.path for m in self.models}
            data.setdefault("platformConfig", None)
        else:
            under = self.model_root.rstrip("/") + "/"
            data["models"] = [
                {"name": m.name, "path": (m.path or "").removeprefix(under)} for m in self.models
            ]
            data.pop("platformConfig", None)
        return data


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def project_version() -> str:
    """The appliance version: pyproject's ``[project] version``."""
    return str(_pyproject()["project"]["version"])


def sdk_version() -> str:
    """The monai-deploy-app-sdk version pinned (``==``) in pyproject's dependencies."""
    for requirement in _pyproject()["project"]["dependencies"]:
        match = re.fullmatch(r"monai-deploy-app-sdk\s*==\s*([\w.+-]+)", requirement.strip())
        if match:
            return match[1]
    raise LookupError("pyproject.toml pins no monai-deploy-app-sdk==X version")


class MapDescription(_Model):
    """The one source of truth for the three files."""

    title: str = "MinIVess 3D vessel segmentation"
    version: Version = Field(default_factory=project_version)
    sdk: str = "monai-deploy"
    sdk_version: Version = Field(default_factory=sdk_version)
    api_version: Version = "1.0.0"  # holoscan-cli DefaultValues.API_VERSION
    command: tuple[str, ...] = ("python3", "-m", "map_app")
    app_root: str = "/opt/holoscan/app"
    model_root: str = "/opt/holoscan/models"
    docs_dir: str = "/opt/holoscan/docs"
    working_dir: str = "/var/holoscan"
    input_dir: str = "/var/holoscan/input"
    output_dir: str = "/var/holoscan/output"
    logs_dir: str = "/var/holoscan/logs"
    config_path: str = "/var/holoscan/app.yaml"
    app_manifest_path: str = "/etc/holoscan/app.json"
    pkg_manifest_path: str = "/etc/holoscan/pkg.json"
    input_formats: tuple[str, ...] = ("dicom", "nifti")
    output_formats: tuple[str, ...] = ("dicom-seg", "dicom-pm", "dicom-sr", "json", "nifti")
    resources: Resources = Resources(cpu=2, gpu=0, memory="8Gi")
    timeout: int = 0
    platform_config: str | None = "dgpu"
    model_name: str = "minivess-vessel-ensemble"
    model_path: str = "minivess-vessel-ensemble"  # relative to model_root

    def environment(self) -> dict[str, str]:
        """The packager's variable set (config_reader.populate_app_manifest)."""
        return {
            "HOLOSCAN_APPLICATION": self.app_root,
            "HOLOSCAN_INPUT_PATH": self.input_dir,
            "HOLOSCAN_OUTPUT_PATH": self.output_dir,
            "HOLOSCAN_WORKDIR": self.working_dir,
            "HOLOSCAN_MODEL_PATH": self.model_root,
            "HOLOSCAN_CONFIG_PATH": self.config_path,
            "HOLOSCAN_APP_MANIFEST_PATH": self.app_manifest_path,
            "HOLOSCAN_PKG_MANIFEST_PATH": self.pkg_manifest_path,
            "HOLOSCAN_DOCS_PATH": self.docs_dir,
            "HOLOSCAN_LOGS_PATH": self.logs_dir,
        }

    def app_manifest(self) -> ApplicationManifest:
        return ApplicationManifest(
            api_version=self.api_version,
            command=list(self.command),
            environment=self.environment(),
            input=DataSpec(path=self.input_dir, formats=list(self.input_formats)),
            output=DataSpec(path=self.output_dir, formats=list(self.output_formats)),
            sdk=self.sdk,
            sdk_version=self.sdk_version,
            timeout=self.timeout,
            version=self.version,
            working_directory=self.working_dir,
        )

    def pkg_manifest(self) -> PackageManifest:
        return PackageManifest(
            api_version=self.api_version,
            application_root=self.app_root,
            model_root=self.model_root,
            models=[ModelEntry(name=self.model_name, path=self.model_path)],
            resources=self.resources,
            version=self.version,
            platform_config=self.platform_config,
        )


HEADER = (
    "Generated by `python -m map_app.manifests --write` from map_app/manifests.py; do not edit."
)


def render_app_json(desc: MapDescription | None = None) -> str:
    return json.dumps((desc or MapDescription()).app_manifest().dump(), indent=2) + "\n"


def render_pkg_json(desc: MapDescription | None = None) -> str:
    return json.dumps((desc or MapDescription()).pkg_manifest().dump(), indent=2) + "\n"


def render_app_yaml(desc: MapDescription | None = None) -> str:
    """The SDK's app.yaml; every scalar is written as JSON, which YAML 1.2 reads unchanged."""
    desc = desc or MapDescription()
    lines = [f"# {HEADER}", "---", "application:"]
    lines += [f"  title: {json.dumps(desc.title)}", f"  version: {json.dumps(desc.version)}"]
    lines += [f"  inputFormats: {json.dumps(list(desc.input_formats))}"]
    lines += [f"  outputFormats: {json.dumps(list(desc.output_formats))}", "resources:"]
    resources = desc.resources.model_dump(by_alias=True, exclude_none=True, mode="json")
    lines += [f"  {key}: {json.dumps(value)}" for key, value in resources.items()]
    return "\n".join(lines) + "\n"


def targets(directory: Path | None = None) -> dict[Path, str]:
    """File -> content: all three in ``directory``, or the committed layout when None."""
    desc = MapDescription()
    json_dir = directory or REPO_ROOT / "map_app" / "map_manifests"
    yaml_dir = directory or REPO_ROOT / "map_app"
    return {
        json_dir / "app.json": render_app_json(desc),
        json_dir / "pkg.json": render_pkg_json(desc),
        yaml_dir / "app.yaml": render_app_yaml(desc),
    }


def stale(directory: Path | None = None) -> list[str]:
    """A unified diff per file whose content differs from what the generator renders."""
    problems = []
    for path, want in targets(directory).items():
        have = path.read_text() if path.is_file() else ""
        if have != want:
            diff = difflib.unified_diff(
                have.splitlines(True), want.splitlines(True), f"{path} (on disk)", f"{path} (new)"
            )
            problems.append("".join(diff) or f"{path}: missing\n")
    return problems


def main(argv: list[str] | None = None) -> int:
    doc = (__doc__ or "").splitlines()[0]
    parser = argparse.ArgumentParser(prog="python -m map_app.manifests", description=doc)
    mode = parser.add_mutually_exclusive_group(required=True)
    help_dir = "DIR, or the committed layout (map_app/app.yaml, map_app/map_manifests/*.json)"
    mode.add_argument("--write", nargs="?", const="", metavar="DIR", help=f"write into {help_dir}")
    mode.add_argument("--check", nargs="?", const="", metavar="DIR", help=f"verify {help_dir}")
    args = parser.parse_args(argv)
    raw = args.write if args.write is not None else args.check
    directory = Path(raw) if raw else None
    if args.write is not None:
        for path, content in targets(directory).items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            print(f"wrote {path}")
        return 0
    problems = stale(directory)
    for problem in problems:
        sys.stderr.write(problem)
    if problems:
        hint = f"python -m map_app.manifests --write {raw}".rstrip()
        sys.stderr.write(f"MAP manifests are stale: run `{hint}`\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
