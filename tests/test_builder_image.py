"""The builder image, built and run with podman (as root, offline): a site's path end to end.

A tiny nnU-Net dataset (written by the generator) goes into the image read-only, with no
network; the image trains the smoke recipe on it mixed with synthetic studies, records
the build as an MLflow run in the mounted var/ and registers a model version. MLflow's own
client then reads the run back on the host. Cold on 2 cores: ~20 s wheelhouse, ~4 min
build; warm: seconds (``containers.images`` reuses an image whose inputs are unchanged).
Missing podman fails this test; it never skips. The container runs with ``--rm``.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from containers import commands, images
from containers.podman import podman
from models.builder.tracking import offline
from models.manifest import read_manifest
from tests.builder_site_support import write_nnunet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


@pytest.mark.requirement("SRS-091")
def test_a_site_build_runs_offline_in_the_builder_image_and_is_tracked(tmp_path: Path) -> None:
    try:
        image = images.build_builder_image(log=lambda message: print(message))
    except commands.ContainerBuildError as error:
        pytest.fail(f"cannot build the builder image: {error}", pytrace=False)
    site = write_nnunet(tmp_path / "Dataset001_Vessels", [1, 2], [3])
    var = tmp_path / "var"
    var.mkdir()
    var.chmod(0o777)  # the image's user (uid 10001) writes the outputs and the store
    done = podman(
        "run", "--rm", "--network", "none", "--name", f"minivess-builder-{uuid.uuid4().hex[:10]}",
        "-v", f"{var}:/work/var", "-v", f"{site}:/data/site:ro", image.ref,
        "--smoke", "--version", "0.1.0", "--site-data", "/data/site",
        "--out-dir", "var/site-ensemble", "--work-dir", "var/site-work",
        check=False, timeout=1200,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    found = re.search(r"MLflow run ([0-9a-f]{32}) .* version (\d+)", output)
    assert found is not None, output[-2000:]
    run_id, version = found.groups()
    assert "mlflow ui --backend-store-uri sqlite:///var/mlflow/mlflow.db" in output

    manifest = read_manifest(var / "site-ensemble")
    (tracked,) = manifest.provenance.mlflow_runs
    assert tracked.run_id == run_id
    roles = {dataset.role: dataset for dataset in manifest.provenance.datasets}
    assert roles["site-train"].format == "nnunet" and roles["site-train"].cases == 2
    assert manifest.data.site_test_cases == 1

    offline()
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{var / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params
    assert run.data.metrics["site_test.CT.dice"] == manifest.site_test_metrics["CT"].dice
    registered = client.get_model_version(manifest.name, version)
    assert registered.run_id == run_id
