"""TorchScript copies of the shipped members, for the MONAI Deploy reference composition.

The weights come from the builder's checkpoints (``var/builder/<member>.pt``; ``make
models`` recreates them bit-identically on this machine type). Before a copy is used it is
checked against the shipped ONNX file: same input, probabilities within 1e-4, so both
sides of the benchmark run the very same networks.

MONAI's image readers hold volumes as (C, W, H, D) = (channel, i, j, k); our members were
trained on (k, j, i) arrays, so the wrapper permutes the spatial axes in and out.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from models.builder.config import SHIPPED
from models.builder.train import build_network
from models.manifest import MANIFEST_NAME, read_manifest


class IjkToKji(torch.nn.Module):
    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.permute(0, 1, 4, 3, 2)).permute(0, 1, 4, 3, 2)


def export_members(model_dir: Path, checkpoint_dir: Path, out_dir: Path) -> list[Path]:
    manifest = read_manifest(model_dir)
    recipes = {recipe.name: recipe for recipe in SHIPPED.members}
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for member in manifest.members:
        checkpoint = checkpoint_dir / f"{member.name}.pt"
        if not checkpoint.is_file():
            raise FileNotFoundError(f"{checkpoint} missing: run `make models` first")
        network = build_network(recipes[member.name])
        network.load_state_dict(torch.load(checkpoint, weights_only=True))
        wrapped = IjkToKji(network.eval())
        patch = member.patch_size
        example = torch.randn(
            1, 1, patch[2], patch[1], patch[0], generator=torch.Generator().manual_seed(0)
        )
        with torch.no_grad():
            traced = torch.jit.trace(wrapped, example)
            reference = torch.softmax(traced(example), 1).numpy()
        session = ort.InferenceSession(
            str(model_dir / member.file), providers=["CPUExecutionProvider"]
        )
        logits = session.run(None, {"image": example.permute(0, 1, 4, 3, 2).numpy()})[0]
        onnx_probability = torch.softmax(torch.from_numpy(logits), 1).permute(0, 1, 4, 3, 2).numpy()
        difference = float(np.abs(reference - onnx_probability).max())
        if difference > 1e-4:
            raise RuntimeError(
                f"{member.name}: TorchScript copy differs from the shipped ONNX "
                f"by {difference:.2e}; checkpoints do not match the ensemble"
            )
        path = out_dir / f"{member.name}.ts"
        traced.save(str(path))
        written.append(path)
    shutil.copy(model_dir / MANIFEST_NAME, out_dir / MANIFEST_NAME)
    return written
