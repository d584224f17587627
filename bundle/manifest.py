"""The release manifest (``manifest.json`` at the top of a bundle) and the bundle's layout.

The manifest lists every other file of the bundle with its size and SHA-256 and says
what the release is: product version, release number (monotonically increasing: sites
refuse one that is not above the installed release), git commit, build time
(``SOURCE_DATE_EPOCH``), the image (archive, image id), models, chart, SBOMs, the
smoke study and the health checks deploy.sh runs. Only ``manifest.json`` and its
signatures are not listed (they cannot list themselves).

The site verifier (``airgap/bundlecheck.py``, standard library only) checks the same
fields without pydantic; ``tests/test_bundle.py`` keeps the two in step.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airgap.bundlecheck import (
    KEYLESS_SIGNATURE,
    MANIFEST,
    PRODUCT,
    SCHEMA_VERSION,
    SIGNATURE,
    SIGSTORE_MEDIA_TYPE,
)
from models.digest import sha256_file

__all__ = [
    "KEYLESS_SIGNATURE",
    "MANIFEST",
    "PRODUCT",
    "SCHEMA_VERSION",
    "SIGNATURE",
    "SIGSTORE_MEDIA_TYPE",
    "ChartInfo",
    "FileEntry",
    "HealthChecks",
    "ImageInfo",
    "ModelsInfo",
    "ReleaseManifest",
    "file_entry",
]

# Where things are inside a bundle.
IMAGES_DIR = "images"
MODELS_DIR = "models"
CHART_DIR = "helm"
SBOM_DIR = "sbom"
COMPLIANCE_DIR = "compliance"
SMOKE_DIR = "smoke/study"
AIRGAP_DIR = "airgap"
# The Grafana dashboard (the chart's dashboards/minivess.json, also inside the chart):
# for sites that import it into Grafana by hand.
DASHBOARD = "grafana/minivess.json"
PYTHON_SBOM = f"{SBOM_DIR}/python-environment.cdx.json"
IMAGE_SBOM = f"{SBOM_DIR}/appliance-image.cdx.json"

_HEX64 = r"^[0-9a-f]{64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Strict):
    path: str = Field(pattern=r"^[A-Za-z0-9._+@=-]+(/[A-Za-z0-9._+@=-]+)*$")
    size: int = Field(ge=0)
    sha256: str = Field(pattern=_HEX64)

    @field_validator("path")
    @classmethod
    def _no_dot_parts(cls, value: str) -> str:
        if any(part in (".", "..") for part in value.split("/")):
            raise ValueError("path parts . and .. are not allowed")
        return value


class ImageInfo(_Strict):
    ref: str = Field(description="the name it was saved under (podman load restores it)")
    id: str = Field(pattern=_HEX64, description="image id: SHA-256 of its config")
    archive: str = Field(description="OCI archive (podman save --format oci-archive)")
    variant: str = "cpu"
    revision: str = Field(description="org.opencontainers.image.revision")
    created: str = Field(description="org.opencontainers.image.created")


class ModelsInfo(_Strict):
    path: str
    name: str
    version: str
    manifest_sha256: str = Field(pattern=_HEX64)


class ChartInfo(_Strict):
    path: str
    name: str
    version: str
    app_version: str


class HealthChecks(_Strict):
    """What deploy.sh checks before it calls a release healthy."""

    dicom_echo: bool = True
    ready_url: str | None = Field(
        default=None, description="inside the container; None when the image has no sidecar"
    )
    smoke_study: str = SMOKE_DIR


class ReleaseManifest(_Strict):
    schema_version: int = SCHEMA_VERSION
    product: str = PRODUCT
    version: str
    release: int = Field(ge=1, description="monotonically increasing release number")
    release_number_source: str = Field(description="'cli' or 'git rev-list --count'")
    git_commit: str
    build_time: str = Field(description="RFC 3339, from SOURCE_DATE_EPOCH")
    source_date_epoch: int
    image: ImageInfo
    models: ModelsInfo
    chart: ChartInfo
    sboms: list[str]
    compliance: str
    health: HealthChecks
    files: list[FileEntry]

    @field_validator("files")
    @classmethod
    def _unique(cls, files: list[FileEntry]) -> list[FileEntry]:
        paths = [entry.path for entry in files]
        if len(set(paths)) != len(paths):
            raise ValueError("a path is listed twice")
        reserved = {MANIFEST, SIGNATURE, KEYLESS_SIGNATURE} & set(paths)
        if reserved:
            raise ValueError(f"{sorted(reserved)} cannot be listed in the manifest")
        return files

    def to_bytes(self) -> bytes:
        """The signed bytes: indented JSON, fields in schema order, newline-terminated."""
        return (self.model_dump_json(indent=2) + "\n").encode()


def file_entry(arcname: str, source: Path) -> FileEntry:
    return FileEntry(path=arcname, size=source.stat().st_size, sha256=sha256_file(source))
