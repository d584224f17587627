"""Every settings model of the product, and the check that refuses unknown names.

A process may hold variables for several components (the service also runs the MAP
pipeline and writes the audit log), so a ``MINIVESS_*`` variable is refused only when
no component reads it: a misspelt name must not be ignored without a word.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping

from map_app.config import AppConfig
from service.settings import ServiceSettings
from settings.base import ENV_PREFIX, SECRETS_DIR_ENV, MinivessSettings, SettingsError
from settings.site import AuditSettings, DeploySettings, ImageBuildSettings, SigningSettings

MODELS: tuple[type[MinivessSettings], ...] = (
    ServiceSettings,
    AppConfig,
    AuditSettings,
    SigningSettings,
    ImageBuildSettings,
    DeploySettings,
)

# Variables that are not settings of a model: name -> what sets and reads it.
OTHER_NAMES: dict[str, str] = {
    SECRETS_DIR_ENV: "folder of secret files named like the variables (e.g. a file "
    "MINIVESS_API_TOKEN), read by every component's settings (settings/base.py)",
    "MINIVESS_WHEEL_DIR": "scripts/bootstrap.sh (make test): folder holding the CPU torch "
    "wheel of the builder group (default /opt/wheels)",
    "MINIVESS_STACK_RAISED": "internal: set by map_app/stack.py when it re-executes the "
    "process with a larger stack; never set it by hand",
}


# Names that sites may still have in their values files: old -> what replaces it.
RENAMED: dict[str, str] = {
    "MINIVESS_AUDIT_KEY": "MINIVESS_AUDIT_HMAC_KEY_FILE",
    "MINIVESS_TLS_CERT_FILE": "MINIVESS_DICOM_TLS_CERT and MINIVESS_HTTP_TLS_CERT",
    "MINIVESS_TLS_KEY_FILE": "MINIVESS_DICOM_TLS_KEY and MINIVESS_HTTP_TLS_KEY",
    "MINIVESS_TLS_CA_FILE": "MINIVESS_DICOM_TLS_CA",
    "MINIVESS_RELEASE_PUBLIC_KEY": "nothing in the appliance reads it: pass the pinned key "
    "to deploy.sh (--public-key) or bundle verify",
    "MINIVESS_IMAGE_VARIANT": "the image label io.minivess.image.variant",
}


def known_names() -> set[str]:
    """Every ``MINIVESS_*`` name some component reads."""
    names = set(OTHER_NAMES)
    for model in MODELS:
        names.update(model.env_names())
    return names


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Refuse ``MINIVESS_*`` variables that no component reads, naming the nearest one."""
    environ = os.environ if environ is None else environ
    known = known_names()
    unknown = sorted(name for name in environ if name.startswith(ENV_PREFIX) and name not in known)
    if not unknown:
        return
    problems = []
    for name in unknown:
        nearest = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        if name in RENAMED:
            problems.append(f"{name} (renamed: {RENAMED[name]})")
        elif nearest:
            problems.append(f"{name} (did you mean {nearest[0]}?)")
        else:
            problems.append(name)
    raise SettingsError(
        "unknown setting(s): " + ", ".join(problems) + "; see settings/REFERENCE.md"
    )
