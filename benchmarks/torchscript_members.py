"""TorchScript copies of the shipped members, for the MONAI Deploy reference composition.

The weights come from the shipped ONNX files themselves (no ``make models`` needed): an
initializer that kept its PyTorch name fills that parameter; the exporter renamed the rest
(PReLU slopes, GroupNorm's scale and shift, as ``onnx::PRelu_202``...), and those fill the
remaining parameters in order, element counts checked. Before a copy is used it is checked
against the shipped ONNX file: same input, probabilities within 1e-4, so both sides of the
benchmark run the very same networks (a wrong pairing could not pass).

MONAI's image readers hold volumes as (C, W, H, D) = (channel, i, j, k); our members were
trained on (k, j, i) arrays, so the wrapper permutes the spatial axes in and out.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

from models.builder.config import SHIPPED
from models.builder.train import build_network
from models.manifest import MANIFEST_NAME, read_manifest

# The benchmarks' studies are CT: only the members run on CT are copied.
BENCHMARK_MODALITY = "CT"


class IjkToKji(torch.nn.Module):
    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.permute(0, 1, 4, 3, 2)).permute(0, 1, 4, 3, 2)


def weights_from_onnx(network: torch.nn.Module, onnx_file: Path) -> dict[str, torch.Tensor]:
    """The state dict of ``network`` filled from the initializers of its ONNX export."""
    initializers = {
        i.name: numpy_helper.to_array(i) for i in onnx.load(str(onnx_file)).graph.initializer
    }
    state = network.state_dict()
    named = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    renamed_params = [k for k in named if k not in initializers]
    renamed_inits = [n for n in initializers if n not in state]
    if len(renamed_params) != len(renamed_inits):
        raise RuntimeError(
            f"{onnx_file.name}: {len(renamed_params)} parameters without a named "
            f"initializer, {len(renamed_inits)} unnamed initializers"
        )
    pairs = [(k, k) for k in named if k in initializers]
    pairs += list(zip(renamed_params, renamed_inits, strict=True))
    filled = dict(state)
    for key, name in pairs:
        value = initializers[name]
        if value.size != state[key].numel():
            raise RuntimeError(f"{onnx_file.name}: {name} {value.shape} does not fit {key}")
        filled[key] = torch.from_numpy(value.copy()).reshape(state[key].shape)
    return filled


def export_members(model_dir: Path, out_dir: Path, monai_order: bool = True) -> list[Path]:
    """TorchScript copies of the shipped members, each checked against its ONNX file.

    ``monai_order``: the copy takes MONAI's (C, i, j, k) volumes (the reference app);
    otherwise the members' own (z, y, x), as ``benchmarks.gpu_inference_check`` feeds them.
    """
    manifest = read_manifest(model_dir)
    recipes = {recipe.name: recipe for recipe in SHIPPED.members}
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for member in manifest.members_for(BENCHMARK_MODALITY):
        network = build_network(recipes[member.name])
        network.load_state_dict(weights_from_onnx(network, model_dir / member.file))
        wrapped = IjkToKji(network.eval()) if monai_order else network.eval()
        patch = member.patch_size if not monai_order else member.patch_size[::-1]
        example = torch.randn(1, 1, *patch, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            traced = torch.jit.trace(wrapped, example)
            reference = torch.softmax(traced(example), 1).numpy()
        session = ort.InferenceSession(
            str(model_dir / member.file), providers=["CPUExecutionProvider"]
        )
        kji = example.permute(0, 1, 4, 3, 2) if monai_order else example
        logits = torch.from_numpy(session.run(None, {"image": kji.numpy()})[0])
        onnx_probability = torch.softmax(logits, 1)
        if monai_order:
            onnx_probability = onnx_probability.permute(0, 1, 4, 3, 2)
        difference = float(np.abs(reference - onnx_probability.numpy()).max())
        if difference > 1e-4:
            raise RuntimeError(
                f"{member.name}: TorchScript copy differs from the shipped ONNX "
                f"by {difference:.2e}: its weights were not recovered from the ONNX file"
            )
        path = out_dir / f"{member.name}.ts"
        traced.save(str(path))
        written.append(path)
    shutil.copy(model_dir / MANIFEST_NAME, out_dir / MANIFEST_NAME)
    return written


def plain_members(model_dir: Path, out_dir: Path) -> list[Path]:
    """Copies in the members' own (z, y, x) order and ``members.json`` (grid, patch,
    normalisation), all that ``benchmarks.gpu_inference_check`` reads on a machine
    without pydantic."""
    written = export_members(model_dir, out_dir, monai_order=False)
    manifest = read_manifest(model_dir)
    described = [
        {
            "name": member.name,
            "file": f"{member.name}.ts",
            "patch": list(member.patch_size),
            "spacing": list(member.input_spacing_mm),
            "normalisation": member.normalisation.model_dump(mode="json"),
        }
        for member in manifest.members_for(BENCHMARK_MODALITY)
    ]
    (out_dir / "members.json").write_text(json.dumps({"members": described}, indent=2))
    return written
