"""The service's settings (gateway, jobs, export, HTTP sidecar): one pydantic-settings model.

Read by ``settings.base.load`` like every component's settings: defaults, the file named
by ``--config`` or ``MINIVESS_SERVICE_CONFIG`` (JSON, or TOML when the name ends in
``.toml``), secret files in ``MINIVESS_SECRETS_DIR``, then ``MINIVESS_<FIELD>`` variables
(list fields take JSON: ``MINIVESS_EXPORT_DESTINATIONS='[{"host": "pacs", "port": 104,
"ae_title": "PACS"}]'``). Every name is listed in ``settings/REFERENCE.md``.

The pipeline's own settings (overlap, providers, ...) stay in ``map_app.config``; this
model only names their file (``pipeline_config``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from settings.base import MinivessSettings, SettingsError, load

__all__ = ["AllowedPeer", "ExportDestination", "ServiceSettings", "SettingsError", "load_settings"]


def _ae_title(value: str) -> str:
    """PS3.5 6.2 (AE VR): 1-16 characters, no backslash or control characters."""
    value = value.strip()
    if not 1 <= len(value) <= 16 or "\\" in value or not value.isprintable():
        raise ValueError(f"not a valid AE title: {value!r} (1-16 printable characters)")
    return value


class AllowedPeer(BaseModel):
    """One association requestor allowed to send to us: calling AE title and address."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ae_title: str
    ip: str = Field(description="an address or network, e.g. 10.0.0.7 or 10.0.0.0/24")

    @field_validator("ae_title")
    @classmethod
    def _check_ae(cls, value: str) -> str:
        return _ae_title(value)

    @field_validator("ip")
    @classmethod
    def _network(cls, value: str) -> str:
        return str(ipaddress.ip_network(value.strip(), strict=False))

    def admits(self, ae_title: str, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return ae_title.strip() == self.ae_title and ip in ipaddress.ip_network(self.ip)


class ExportDestination(BaseModel):
    """A C-STORE SCP that receives the results (usually the PACS that sent the study)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    port: int = Field(ge=1, le=65535)
    ae_title: str
    tls: bool = Field(
        default=False,
        description="C-STORE over TLS: the destination's certificate is checked against "
        "dicom_tls_ca and host; dicom_tls_cert/key are presented as our client certificate",
    )
    results: bool = Field(
        default=True,
        description="gets every processed study's results; false: only the studies a "
        "routing rule routes to it (routing_rules)",
    )

    @field_validator("ae_title")
    @classmethod
    def _check_ae(cls, value: str) -> str:
        return _ae_title(value)

    @property
    def name(self) -> str:
        """How the journal and the logs name this destination."""
        return f"{self.ae_title}@{self.host}:{self.port}"


class ServiceSettings(MinivessSettings):
    """``python -m service`` (the image's ``serve``): DICOM gateway, jobs, export, HTTP sidecar."""

    component = "service"
    config_file_env = "MINIVESS_SERVICE_CONFIG"

    ae_title: str = Field(default="MINIVESS", description="our AE title (called AE title)")
    dicom_host: str = Field(default="127.0.0.1", description="address the DICOM SCP binds")
    dicom_port: int = Field(default=11112, ge=0, le=65535, description="0 = any free port")
    http_host: str = Field(default="127.0.0.1", description="address of the HTTP sidecar")
    http_port: int = Field(default=3000, ge=0, le=65535, description="HTTP sidecar port")
    http_tls_cert: Path | None = Field(
        default=None,
        description="PEM certificate (chain) of the HTTP port; with http_tls_key "
        "the sidecar serves HTTPS only",
    )
    http_tls_key: Path | None = Field(default=None, description="PEM key of http_tls_cert")
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="a separate port for GET /metrics (on http_host; HTTPS with the HTTP "
        "certificate when http_tls_cert is set); 0 = /metrics on the HTTP port only",
    )
    var_dir: Path = Field(default=Path("var"), description="spool, journal, outputs, logs")
    quiet_period_s: float = Field(
        default=10.0, gt=0, description="a study is complete after this long without a new instance"
    )
    max_associations: int = Field(default=10, ge=1, description="concurrent inbound associations")
    dicom_max_pdu_bytes: int = Field(
        default=2**20,
        ge=4096,
        le=2**32 - 1,
        description="Maximum Length Received we announce (PS3.8 D.1.1): senders cut data "
        "into PDUs of at most this size; larger PDUs cost less per instance, each is held "
        "in memory whole",
    )
    allowlist: list[AllowedPeer] = Field(
        default_factory=list,
        description="when not empty, only these calling AE title + address pairs may associate",
    )
    dicom_tls_cert: Path | None = Field(
        default=None,
        description="PEM certificate (chain) of the DICOM port; with dicom_tls_key the port "
        "speaks DICOM over TLS only (PS3.15 B.1, BCP 195: TLS 1.2 or newer)",
    )
    dicom_tls_key: Path | None = Field(default=None, description="PEM key of dicom_tls_cert")
    dicom_tls_ca: Path | None = Field(
        default=None,
        description="PEM CA certificates that verify DICOM peers: senders' client certificates "
        "and the server certificates of TLS export destinations (default: the system CAs)",
    )
    dicom_tls_require_client_cert: bool = Field(
        default=False,
        description="refuse TLS senders without a client certificate signed by dicom_tls_ca",
    )
    min_free_disk_bytes: int = Field(
        default=2 * 2**30, ge=0, description="below this much free disk C-STORE answers 0xA700"
    )
    max_instance_bytes: int = Field(
        default=2**30,
        ge=1,
        description="largest data set accepted, as received and once inflated (Deflated "
        "Explicit VR Little Endian); a larger one answers 0xA700",
    )
    max_pending_jobs: int = Field(
        default=100, ge=1, description="unfinished studies before new studies are refused (0xA702)"
    )
    model_dir: Path = Field(default=Path("models/ensemble"), description="the ONNX ensemble")
    drift_interval_s: float = Field(
        default=600.0,
        ge=0,
        description="seconds between drift measurements of the newest studies against the "
        "manifest's reference profile (minivess_drift_share); 0 = off",
    )
    drift_window: int = Field(
        default=50, ge=5, description="newest series a drift measurement compares"
    )
    pipeline_config: Path | None = Field(
        default=None, description="map_app pipeline config (JSON); None = its defaults"
    )
    max_pipeline_attempts: int = Field(
        default=3, ge=1, description="pipeline runs of one job (restarts included) before failed"
    )
    export_destinations: list[ExportDestination] = Field(
        default_factory=list,
        description="where results are sent (C-STORE): a JSON list of {host, port, ae_title, "
        "tls, results}",
    )
    export_retries: int = Field(default=5, ge=0, description="retries after the first attempt")
    export_backoff_s: float = Field(default=5.0, ge=0, description="first retry delay, doubled")
    export_max_backoff_s: float = Field(default=300.0, ge=0, description="longest retry delay")
    export_timeout_s: float = Field(default=30.0, gt=0, description="DIMSE/network timeout")
    fhir_base_url: str | None = Field(
        default=None,
        description="FHIR R4 server base URL (http or https) that gets a DiagnosticReport "
        "transaction Bundle per processed study, with the export's retries; None = off",
    )
    fhir_auth_token: SecretStr | None = Field(
        default=None,
        description="bearer token for fhir_base_url; put it in the secret file "
        "MINIVESS_FHIR_AUTH_TOKEN under MINIVESS_SECRETS_DIR, not in the config file",
    )
    fhir_tls_ca: Path | None = Field(
        default=None, description="PEM CA certificates for an https fhir_base_url (default: system)"
    )
    hl7_host: str | None = Field(
        default=None,
        description="RIS host that gets an HL7 v2.5 ORU^R01 per processed study over MLLP, "
        "with the export's retries; None = off",
    )
    hl7_port: int = Field(default=2575, ge=1, le=65535, description="MLLP port of hl7_host")
    hl7_receiving_application: str = Field(
        default="RIS", description="MSH-5 of the ORU^R01 messages (the RIS's application name)"
    )
    notification_timeout_s: float = Field(
        default=30.0, gt=0, description="timeout of one FHIR request or MLLP exchange"
    )
    journal_url: str | None = Field(
        default=None,
        description="the job journal and queue: None = the SQLite file var/journal.sqlite3 "
        "(one host, one process); postgresql://USER@HOST:PORT/DATABASE when the ingest tier "
        "and the workers run apart and share it (password in journal_password)",
    )
    journal_password: SecretStr | None = Field(
        default=None,
        description="password of the journal_url user; put it in the secret file "
        "MINIVESS_JOURNAL_PASSWORD under MINIVESS_SECRETS_DIR, never in the URL",
    )
    job_lease_s: float = Field(
        default=60.0,
        ge=5.0,
        description="a claimed job (or export) is held this long and renewed by a running "
        "worker every third of it; a job whose worker died is taken again once it expires",
    )
    local_worker: bool = Field(
        default=True,
        description="run the inference worker inside `serve` (one host); false: the ingest "
        "tier alone (gateway, HTTP intake, grouping, export), with workers started apart by "
        "`python -m service worker` on the shared journal_url and var_dir",
    )
    routing_rules: Path | None = Field(
        default=None,
        description="routing rule file (YAML or JSON; service/routing.py, example "
        "service/routing.example.yaml): process, ignore or route each study, and its "
        "priority (stat, normal, off-peak); None = process every study at normal priority",
    )
    dev_mode: bool = Field(default=False, description="developer defaults (no API auth)")
    api_token: SecretStr | None = Field(
        default=None, description="bearer token of the HTTP API (sidecar)"
    )
    log_level: str = Field(default="INFO", description="Python logging level name")
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP traces URL (e.g. http://collector:4318/v1/traces); spans are "
        "always written as JSON lines under var/traces",
    )
    audit_log: Path | None = Field(
        default=None, description="audit log (JSON lines); default var/audit/audit.jsonl"
    )
    audit_hmac_key_file: Path | None = Field(
        default=None,
        description="file holding the HMAC key (hex) that hashes identifiers in the audit "
        "log; replicas of one site must share it (a Kubernetes Secret); default "
        "var/audit/site.key, created on first start",
    )

    @field_validator("ae_title")
    @classmethod
    def _check_ae(cls, value: str) -> str:
        return _ae_title(value)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Combinations that cannot work as meant, refused before anything starts."""
        for port, cert, key in (
            ("dicom", self.dicom_tls_cert, self.dicom_tls_key),
            ("http", self.http_tls_cert, self.http_tls_key),
        ):
            if (cert is None) != (key is None):
                raise ValueError(f"{port}_tls_cert and {port}_tls_key must be set together")
        if self.dicom_tls_require_client_cert and (
            self.dicom_tls_cert is None or self.dicom_tls_ca is None
        ):
            raise ValueError(
                "dicom_tls_require_client_cert needs dicom_tls_cert, dicom_tls_key and dicom_tls_ca"
            )
        if self.metrics_port and self.metrics_port in (self.http_port, self.dicom_port):
            raise ValueError("metrics_port must differ from http_port and dicom_port")
        if self.fhir_base_url is not None and not self.fhir_base_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError("fhir_base_url must be an http:// or https:// URL")
        if self.journal_url is not None and not self.journal_url.startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("journal_url must be a postgresql:// URL (unset: the SQLite file)")
        if self.journal_url is not None and urlsplit(self.journal_url).password:
            raise ValueError("journal_url must not carry a password: put it in the secret "
                             "file MINIVESS_JOURNAL_PASSWORD (journal_password)")  # fmt: skip
        if self.dev_mode and self.api_token is not None:
            raise ValueError("dev_mode turns API authentication off: unset api_token or dev_mode")
        return self

    def missing_files(self) -> list[str]:
        """Files the settings name that are not there (checked by ``serve`` at start)."""
        named = {
            "dicom_tls_cert": self.dicom_tls_cert,
            "dicom_tls_key": self.dicom_tls_key,
            "dicom_tls_ca": self.dicom_tls_ca,
            "http_tls_cert": self.http_tls_cert,
            "http_tls_key": self.http_tls_key,
            "pipeline_config": self.pipeline_config,
            "fhir_tls_ca": self.fhir_tls_ca,
            "routing_rules": self.routing_rules,
        }
        return [f"{name}: {path}" for name, path in named.items()
                if path is not None and not path.is_file()]  # fmt: skip

    @property
    def spool_dir(self) -> Path:
        return self.var_dir / "spool"

    @property
    def journal_path(self) -> Path:
        """The single host's SQLite journal file (when journal_url is not set)."""
        return self.var_dir / "journal.sqlite3"

    @property
    def journal_target(self) -> Path | str:
        """What the journal opens: the PostgreSQL URL, or the SQLite file."""
        return self.journal_url or self.journal_path

    @property
    def outputs_dir(self) -> Path:
        return self.var_dir / "outputs"

    @property
    def logs_dir(self) -> Path:
        return self.var_dir / "logs"

    @property
    def traces_dir(self) -> Path:
        return self.var_dir / "traces"

    @property
    def drift_store(self) -> Path:
        return self.var_dir / "drift" / "features.jsonl"

    @property
    def audit_log_path(self) -> Path:
        return self.audit_log or self.var_dir / "audit" / "audit.jsonl"

    @property
    def audit_key_file(self) -> Path:
        return self.audit_hmac_key_file or self.var_dir / "audit" / "site.key"


def load_settings(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> ServiceSettings:
    """Defaults, the config file, secret files, ``MINIVESS_*`` variables, ``overrides``."""
    return load(ServiceSettings, path, environ, **overrides)
