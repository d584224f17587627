"""The settings contract: what a deployment names is read by the code, and documented.

Every ``MINIVESS_*`` name that the Helm chart sets (rendered with each values file), that
``airgap/deploy.sh``, the Dockerfiles and the entrypoint use, and that the docs mention
is a setting some component reads (``settings/registry.py``); every setting is
documented in the generated reference; no code reads a ``MINIVESS_*`` variable around
the settings layer. The commands refuse unknown names and inconsistent settings before
anything starts, with exit code 78.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from service.settings import load_settings
from settings.base import EXIT_CONFIG, SettingsError, load
from settings.reference import REFERENCE, render
from settings.registry import MODELS, RENAMED, check_environment, known_names
from settings.site import DeploySettings
from tests.helm_support import VALUE_SETS, values
from tests.helm_support import render as render_chart

REPO = Path(__file__).resolve().parents[1]
NAME = re.compile(r"MINIVESS_[A-Z0-9][A-Z0-9_]*")
PACKAGES = ["settings", "service", "map_app", "operators", "models", "compliance", "bundle",
            "containers", "airgap", "synthetic", "benchmarks"]  # fmt: skip
DOCS = [
    "README.md",
    "helm/README.md",
    "helm/minivess/values.yaml",
    "helm/minivess/templates/NOTES.txt",
    "airgap/README.md",
    "bundle/README.md",
    *sorted(str(p.relative_to(REPO)) for p in (REPO / "compliance" / "docs").glob("*.md")),
]


def names_in(text: str) -> set[str]:
    return set(NAME.findall(text))


def unknown(names: set[str], also: set[str] | None = None) -> set[str]:
    """Names no component reads; ``MINIVESS_DICOM_TLS_`` (from ``..._TLS_*``) is a prefix."""
    known = known_names() | (also or set())
    return {
        name
        for name in names
        if name not in known and not (name.endswith("_") and any(k.startswith(name) for k in known))
    }


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_name_the_chart_sets_is_read(value_set: str) -> None:
    docs = render_chart(values(value_set))
    named = names_in(yaml.safe_dump_all(docs))
    assert named, "the chart sets no MINIVESS_* name at all?"
    assert not unknown(named), f"the chart ({value_set}) sets names nothing reads"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_the_charts_settings_load(value_set: str) -> None:
    """The ConfigMap's values are valid for every component that reads them."""
    docs = render_chart(values(value_set))
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    environ = config_map["data"]
    check_environment(environ)
    for model in MODELS:
        # Files named there exist only in the pod; validate the values, not the files.
        relevant = {k: v for k, v in environ.items() if k in model.env_names()}
        load(model, environ=relevant)


@pytest.mark.parametrize(
    "path", ["airgap/deploy.sh", "airgap/health.sh", "Dockerfile", "models/builder/Dockerfile",
             "containers/entrypoint.sh", "Makefile", ".ci/run", "scripts/bootstrap.sh"],
)  # fmt: skip
def test_every_name_a_script_or_image_uses_is_read(path: str) -> None:
    assert not unknown(names_in((REPO / path).read_text()))


def test_deploy_sh_reads_exactly_its_documented_settings() -> None:
    script = (REPO / "airgap" / "deploy.sh").read_text()
    read = set(re.findall(r"\$\{(MINIVESS_[A-Z0-9_]+)", script))
    assert read == set(DeploySettings.env_names()) - {"MINIVESS_SECRETS_DIR"}


@pytest.mark.parametrize("path", DOCS)
def test_docs_name_only_real_settings(path: str) -> None:
    """Docs may also name a renamed setting (to tell sites what replaced it)."""
    assert not unknown(names_in((REPO / path).read_text()), also=set(RENAMED)), path


def test_code_names_only_known_settings_and_reads_none_around_the_layer() -> None:
    strays, around = set(), []
    for package in PACKAGES:
        for source in (REPO / package).rglob("*.py"):
            text = source.read_text()
            strays |= unknown(names_in(text), also=set(RENAMED))
            for match in re.finditer(r"environ(?:\.get\(|\[)\s*[\"'](MINIVESS_\w+)", text):
                if source.parent.name != "settings" and source.name != "stack.py":
                    around.append(f"{source.relative_to(REPO)}: {match[1]}")
    assert not strays
    assert not around, "read through settings.base.load instead"


def test_every_setting_is_documented_and_the_reference_is_fresh() -> None:
    for model in MODELS:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.env_name(name)} has no description"
    assert REFERENCE.read_text() == render(), "run: python -m settings reference --write"
    assert known_names() <= names_in(REFERENCE.read_text())


@pytest.mark.parametrize("model", [m for m in MODELS if m is not DeploySettings])
def test_every_setting_is_used_by_the_code(model: type) -> None:
    """A field nobody reads is a setting that silently does nothing."""
    code = "\n".join(
        source.read_text()
        for package in PACKAGES
        for source in (REPO / package).rglob("*.py")
        if source.parent.name != "settings" or source.name != "site.py"
    )
    unused = [name for name in model.model_fields if not re.search(rf"\.{name}\b", code)]
    assert not unused, f"{model.__name__}: {unused}"


# ---------------------------------------------------------------- refused at start


def run(module: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MINIVESS_")}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**clean, "PYTHONPATH": str(REPO), **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.requirement("SRS-083")
def test_a_misspelt_name_is_refused_with_the_nearest_valid_one(tmp_path: Path) -> None:
    done = run("service", "settings", MINIVESS_DICOM_PRT="104", MINIVESS_VAR_DIR=str(tmp_path))
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "MINIVESS_DICOM_PRT (did you mean MINIVESS_DICOM_PORT?)" in done.stderr
    done = run("map_app", "-i", str(tmp_path), "-o", str(tmp_path), MINIVESS_OVERLAPP="0.5")
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "did you mean MINIVESS_OVERLAP?" in done.stderr
    done = run("service", "settings", MINIVESS_TLS_CERT_FILE="/etc/tls.crt")
    assert done.returncode == EXIT_CONFIG
    assert "renamed: MINIVESS_DICOM_TLS_CERT and MINIVESS_HTTP_TLS_CERT" in done.stderr


@pytest.mark.requirement("SRS-083")
def test_half_configured_https_fails_before_the_models_load(tmp_path: Path) -> None:
    cert = tmp_path / "tls.crt"
    cert.write_text("not a certificate")
    absent_models = str(tmp_path / "no-models")  # loading them would fail with exit 20
    base = {"MINIVESS_VAR_DIR": str(tmp_path / "var"), "MINIVESS_MODEL_DIR": absent_models,
            "MINIVESS_DICOM_PORT": "0", "MINIVESS_HTTP_PORT": "0"}  # fmt: skip
    done = run("service", "serve", **base, MINIVESS_HTTP_TLS_CERT=str(cert))
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "http_tls_cert and http_tls_key must be set together" in done.stderr
    done = run("service", "serve", **base, MINIVESS_HTTP_TLS_CERT=str(cert),
               MINIVESS_HTTP_TLS_KEY=str(tmp_path / "absent.key"))  # fmt: skip
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "http_tls_key" in done.stderr and "missing" in done.stderr
    done = run("service", "serve", **base, MINIVESS_HTTP_TLS_CERT=str(cert),
               MINIVESS_HTTP_TLS_KEY=str(cert))  # fmt: skip
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "cannot load the HTTP TLS certificate/key" in done.stderr


@pytest.mark.requirement("SRS-083")
def test_secret_files_are_read_and_the_environment_wins(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "MINIVESS_API_TOKEN").write_text("from-a-file\n")
    settings = load_settings(environ={"MINIVESS_SECRETS_DIR": str(secrets)})
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "from-a-file"
    settings = load_settings(
        environ={"MINIVESS_SECRETS_DIR": str(secrets), "MINIVESS_API_TOKEN": "from-env"}
    )
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "from-env"
    with pytest.raises(SettingsError, match="MINIVESS_SECRETS_DIR is not a folder"):
        load_settings(environ={"MINIVESS_SECRETS_DIR": str(tmp_path / "absent")})


@pytest.mark.requirement("SRS-083")
@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MINIVESS_DICOM_TLS_KEY": "/k.pem"}, "dicom_tls_cert and dicom_tls_key"),
        ({"MINIVESS_DICOM_TLS_REQUIRE_CLIENT_CERT": "true"}, "needs dicom_tls_cert"),
        ({"MINIVESS_METRICS_PORT": "3000"}, "metrics_port must differ"),
        ({"MINIVESS_DEV_MODE": "true", "MINIVESS_API_TOKEN": "t"}, "dev_mode turns"),
        ({"MINIVESS_EXPORT_DESTINATIONS": "[{"}, "MINIVESS_EXPORT_DESTINATIONS must be JSON"),
        ({"MINIVESS_DICOM_PORT": "http"}, r"MINIVESS_DICOM_PORT \(dicom_port\)"),
    ],
)
def test_cross_field_rules(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(environ=environ)
