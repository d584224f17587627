"""The GPU check computes the appliance's inference stage (run here on the CPU in fp32).

``benchmarks/gpu_inference_check.py`` re-implements the stage in torch for machines that
have no pydantic or onnxruntime-gpu; its figures mean something only if it computes what
``models.inference`` computes: same normalisation, resampling, windows, blending and flips.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import gpu_inference_check as check
from models.inference import SlidingWindowSettings, ensemble_probabilities
from models.loader import load_ensemble

MODELS = Path(__file__).resolve().parents[1] / "models" / "ensemble"


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gpu-check")
    assert check.main(["prepare", "--models", str(MODELS), "--out", str(folder)]) == 0
    return folder


@pytest.mark.slow
def test_the_torch_stage_equals_the_appliances(members: Path) -> None:
    spacing = [1.0, 0.5, 0.5]
    image = check.test_volume([24, 72, 80], torch.device("cpu"))
    loaded = check.load_members(members, torch.device("cpu"))
    ours = check.inference_stage(loaded, image, spacing, 0.25, 4, flips=True, bf16=False)
    settings = SlidingWindowSettings(overlap=0.25, flips=((0,), (1,), (2,)), screen=False)
    ensemble = load_ensemble(MODELS, ("CPUExecutionProvider",), threads=2)
    stack = ensemble_probabilities(ensemble, image.numpy(), tuple(spacing), settings, modality="CT")
    appliance = stack.mean(axis=0)
    np.testing.assert_allclose(ours.numpy(), appliance, atol=2e-3)
    assert ((ours.numpy() >= 0.5) == (appliance >= 0.5)).mean() > 0.9999


@pytest.mark.slow
def test_the_check_prints_and_writes_its_figures(members: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "gpu.json"
    argv = ["run", "--members", str(members), "--shape", "40x40x16", "--repeats", "2",
            "--device", "cpu", "--fp32", "--no-flips", "--out", str(out)]  # fmt: skip
    assert check.main(argv) == 0
    figures = json.loads(out.read_text())
    assert figures["p50_s"] <= figures["p95_s"] and figures["members"] == [
        "unet-a",
        "segresnet-b",
        "unet-c",
    ]
    assert "| CPU | 40x40x16 | 3 x 1 passes |" in capsys.readouterr().out


def test_the_check_imports_without_what_the_gpu_machines_lack() -> None:
    """No pydantic, onnxruntime-gpu, scipy, pydicom or Holoscan there: numpy and torch only."""
    import subprocess
    import sys

    blocked = "import sys\nfor m in ('pydantic', 'onnxruntime', 'scipy', 'pydicom', 'holoscan'):"
    code = f"{blocked}\n    sys.modules[m] = None\nimport benchmarks.gpu_inference_check"
    root = MODELS.parents[1]
    subprocess.run(
        [sys.executable, "-c", code], cwd=root, check=True, env={"PYTHONPATH": str(root)}
    )
