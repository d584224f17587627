"""Settings of the site tools: the audit log, release signing, the image build and deploy.sh.

The service's and the MAP's own settings live beside their code
(``service/settings.py``, ``map_app/config.py``); all of them are listed together in
``settings/registry.py`` and in the generated reference (``settings/REFERENCE.md``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from settings.base import MinivessSettings


class AuditSettings(MinivessSettings):
    """Where the audit log and its identifier key are (``compliance/audit``).

    The service and the MAP audit into the same log; ``python -m compliance.audit``
    (verify, append, checkpoint) and ``airgap/deploy.sh`` read the same names.
    """

    component = "audit"

    audit_log: Path = Field(
        default=Path("var/audit/audit.jsonl"), description="the audit log (JSON lines)"
    )
    audit_hmac_key_file: Path | None = Field(
        default=None,
        description="file holding the site's HMAC key (hex) that hashes identifiers in the "
        "audit log; every replica of a site must use the same key (a Kubernetes Secret). "
        "Without it the MAP job writes no audit entries; the service creates "
        "var/audit/site.key on first start",
    )
    code_version: str | None = Field(
        default=None,
        description="the code revision recorded in audit entries (the image sets it); "
        "default: the git commit of the checkout",
    )


class SigningSettings(MinivessSettings):
    """Release signing (``python -m bundle``)."""

    component = "signing"

    release_key_passphrase: SecretStr | None = Field(
        default=None, description="passphrase of an encrypted release signing key"
    )


class ImageBuildSettings(MinivessSettings):
    """The offline image build (``python -m containers.build``, ``make image``)."""

    component = "image build"

    debian_mirror: str | None = Field(
        default=None,
        description="Debian mirror URL for the base image; default: the one in this "
        "machine's /etc/apt sources",
    )
    debian_security_mirror: str | None = Field(
        default=None,
        description="Debian security mirror URL; default: the one in /etc/apt sources",
    )


class DeploySettings(MinivessSettings):
    """``airgap/deploy.sh``: a shell script, so it reads these itself (same names).

    Each is also a command-line option of deploy.sh (``--home``, ``--public-key``, ...),
    which takes precedence. The model documents them and lets the contract test check
    that deploy.sh reads exactly these.
    """

    component = "deploy.sh"

    home: Path = Field(
        default=Path("/var/lib/minivess-appliance"),
        description="site state: releases/, state.json, var/ (--home)",
    )
    public_key: Path | None = Field(
        default=None,
        description="the pinned release public key; default HOME/release-key.pub (--public-key)",
    )
    engine: str | None = Field(
        default=None, description="podman or docker; default podman when installed (--engine)"
    )
    container: str = Field(default="minivess", description="the service container (--name)")
    env_file: Path | None = Field(
        default=None,
        description="the service's settings as MINIVESS_*=... lines; default HOME/site.env "
        "(--env-file)",
    )
    publish: str = Field(
        default="11112:11112 3000:3000", description="ports to publish (--publish)"
    )
    network: str | None = Field(
        default=None, description="'host' to use the host network instead (--network)"
    )
    health_timeout: int = Field(
        default=180, ge=1, description="seconds for C-ECHO and /readyz (--health-timeout)"
    )
    smoke_timeout: int = Field(
        default=600, ge=1, description="seconds for the smoke study after install"
    )
    audit_log: Path | None = Field(
        default=None,
        description="deploy.sh's audit entries go to this log; default HOME/var/audit/"
        "audit.jsonl, the service's log (--audit-log)",
    )
    image_repo: str = Field(
        default="localhost/minivess-appliance",
        description="repository of the loaded images (tags release-N)",
    )
