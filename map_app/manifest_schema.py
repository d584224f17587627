"""The schema of the MAP manifests ``app.json`` and ``pkg.json``, in both forms found in the wild.

``ApplicationManifest`` and ``PackageManifest`` read either form and normalise it;
``dump(form=...)`` writes either form back. ``map_app.manifests`` renders the appliance's own
files from ``MapDescription`` through these models.

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
"""

from __future__ import annotations

import json
import math
import posixpath
import re
import shlex
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

Form = Literal["packager", "spec"]
_GI, _MI = 1 << 30, 1 << 20
_UNITS = {"Gi": _GI, "GiB": _GI, "Mi": _MI, "MiB": _MI, "GB": 10**9, "MB": 10**6}
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)\s*(GiB|Gi|MiB|Mi|GB|MB)$")
_SEMVER = re.compile(r"^\d+\.\d+(?:\.\d+)?(?:[-+][0-9A-Za-z.+-]+)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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


class ManifestModel(BaseModel):
    """camelCase keys, unknown keys refused, immutable: what every manifest part shares."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class Resources(ManifestModel):
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


class Probe(ManifestModel):
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


class DataSpec(ManifestModel):
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


class ApplicationManifest(ManifestModel):
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


class ModelEntry(ManifestModel):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[^\s\x00-\x1f\x7f]+$")
    path: str | None = None


class PackageManifest(ManifestModel):
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
