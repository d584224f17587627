"""How far from the machine's limit: FLOPs per window and the measured matmul peak.

``member_flops`` counts the multiply-adds of every convolution of an exported member (ONNX
``Conv`` and ``ConvTranspose``, 2 FLOPs each) for one window of its patch size: they are
all but a fraction of a percent of its arithmetic (normalisation and activations are
elementwise). ``matmul_peak`` measures what this CPU reaches on a large dense matrix
product, fp32 and bf16, with the thread count the benchmark gives the pipelines: the
practical roof a convolution network can approach. The pipeline benchmark divides the
FLOPs of the windows each side ran by its inference seconds and prints both.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference


def _dims(value: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value for d in value.type.tensor_type.shape.dim]


def member_flops(onnx_file: Path, patch: tuple[int, int, int]) -> float:
    """FLOPs of one (1, 1, *patch) window through the member in ``onnx_file``."""
    model = onnx.load(str(onnx_file))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, (1, 1, *patch), strict=True):
        dim.ClearField("dim_param")
        dim.dim_value = value
    inferred = shape_inference.infer_shapes(model)
    shapes = {
        value.name: _dims(value)
        for value in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
    }
    weights = {init.name: list(init.dims) for init in model.graph.initializer}
    flops = 0.0
    for node in inferred.graph.node:
        if node.op_type == "Conv":
            # weight (Cout, Cin/groups, k...): every output element takes Cin/groups * k^3 MACs
            out = shapes[node.output[0]]
            flops += 2.0 * float(np.prod(out[1:])) * float(np.prod(weights[node.input[1]][1:]))
        elif node.op_type == "ConvTranspose":
            # weight (Cin, Cout/groups, k...): every input element spreads Cout/groups * k^3 MACs
            source = shapes[node.input[0]]
            flops += 2.0 * float(np.prod(source[1:])) * float(np.prod(weights[node.input[1]][1:]))
    if flops == 0.0:
        raise ValueError(f"{onnx_file}: no convolution found (shape inference failed?)")
    return flops


def matmul_peak(dtype: str, threads: int, size: int = 2048, repeats: int = 5) -> float:
    """Median GFLOP/s of a ``size``-square matrix product in ``dtype`` ("fp32" or "bf16")."""
    import torch  # the development environment's; the appliance runtime has none

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        kind = torch.float32 if dtype == "fp32" else torch.bfloat16
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=generator).to(kind)
        b = torch.randn(size, size, generator=generator).to(kind)
        torch.matmul(a, b)  # warm-up: kernel selection, page faults
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            torch.matmul(a, b)
            times.append(time.perf_counter() - started)
        return 2.0 * size**3 / statistics.median(times) / 1e9
    finally:
        torch.set_num_threads(previous)
