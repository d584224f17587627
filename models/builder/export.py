"""ONNX export of a trained member, with a parity check that fails the export.

Exported with opset >= 17, dynamic batch and spatial dimensions. Parity: the ONNX Runtime
probabilities must match PyTorch's within ``tolerance`` (max absolute difference) on a
random patch, on a real patch, and on a patch of another size that exercises the dynamic axes;
otherwise the file is removed and ``ExportParityError`` raised.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

INPUT_NAME = "image"
OUTPUT_NAME = "logits"


class ExportParityError(RuntimeError):
    """ONNX Runtime and PyTorch disagree beyond the tolerance."""


def export_onnx(network: torch.nn.Module, patch: tuple[int, int, int], opset: int) -> bytes:
    """Serialise ``network`` (eval mode) to ONNX bytes."""
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    network.eval()
    example = torch.zeros((1, 1, *patch), dtype=torch.float32)
    buffer = io.BytesIO()
    dynamic = {0: "batch", 2: "depth", 3: "height", 4: "width"}
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of dynamo; it is still
        # the one that exports MONAI's 3D nets with dynamic spatial axes reliably.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            (example,),
            buffer,  # type: ignore[arg-type]  # accepts a binary file object at run time
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic},
            do_constant_folding=True,
            external_data=False,
        )
    return buffer.getvalue()


def _probabilities(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def parity_max_difference(
    network: torch.nn.Module, onnx_bytes: bytes, inputs: list[np.ndarray]
) -> float:
    """Largest |p_torch - p_onnx| over ``inputs`` (each (B, 1, z, y, x) float32)."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in inputs:
        with torch.no_grad():
            reference = _probabilities(network(torch.from_numpy(batch)).numpy())
        candidate = _probabilities(session.run(None, {INPUT_NAME: batch})[0])
        worst = max(worst, float(np.abs(reference - candidate).max()))
    return worst


def parity_inputs(
    real_patch: np.ndarray, patch: tuple[int, int, int], seed: int
) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # Another size than the export example, still divisible by the networks' strides
    # (up to four stride-2 levels: 16).
    other = (max(16, patch[0] - 16), patch[1], patch[2] + 16)
    return [
        rng.normal(size=(2, 1, *patch)).astype(np.float32),
        real_patch[None, None].astype(np.float32),
        rng.normal(size=(1, 1, *other)).astype(np.float32),
    ]


def export_with_parity(
    network: torch.nn.Module,
    patch: tuple[int, int, int],
    opset: int,
    destination: Path,
    real_patch: np.ndarray,
    tolerance: float,
    seed: int = 0,
) -> float:
    """Write the ONNX file only if parity holds; returns the measured max difference."""
    onnx_bytes = export_onnx(network, patch, opset)
    difference = parity_max_difference(network, onnx_bytes, parity_inputs(real_patch, patch, seed))
    if not difference <= tolerance:
        destination.unlink(missing_ok=True)
        raise ExportParityError(
            f"{destination.name}: ONNX vs PyTorch max probability difference {difference:.3g} "
            f"exceeds {tolerance:.1g}; export refused"
        )
    destination.write_bytes(onnx_bytes)
    return difference
