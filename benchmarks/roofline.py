"""How far from the machine's limit: FLOPs per window and the measured matmul peak.

``member_flops`` counts the multiply-adds of every convolution of an exported member (ONNX
``Conv`` and ``ConvTranspose``, 2 FLOPs each) for one window of its patch size: they are
all but a fraction of a percent of its arithmetic (normalisation and activations are
elementwise). ``matmul_peak`` measures what this CPU reaches on a large dense matrix
product, fp32 and bf16, through the appliance's runtime (ONNX Runtime, OpenVINO where
present) with the thread count the benchmark gives the pipelines: the practical roof a
convolution network can approach. The pipeline benchmark divides the
FLOPs of the windows each side ran by its inference seconds and prints both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper, shape_inference

from models.loader import choose_providers, load_ensemble, provider_entries, session_options
from models.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]


def _dims(value: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value for d in value.type.tensor_type.shape.dim]


def member_flops(onnx_file: Path, patch: tuple[int, int, int]) -> float:
    """FLOPs of one (1, 1, *patch) window through the member in ``onnx_file``."""
    model = onnx.load(str(onnx_file))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, (1, 1, *patch), strict=True):
        dim.ClearField("dim_param")
        dim.dim_value = value
    # Data propagation follows Shape -> Reshape (GroupNorm's export): without it the
    # shapes after every normalisation are unknown and those convolutions would count 0.
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    shapes = {
        value.name: _dims(value)
        for value in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
    }
    weights = {init.name: list(init.dims) for init in model.graph.initializer}
    flops = 0.0

    def known(name: str) -> list[int]:
        shape = shapes.get(name, [])
        if not shape or 0 in shape:
            raise ValueError(
                f"{onnx_file}: shape of {name!r} not inferred ({shape}): FLOPs unknown"
            )
        return shape

    for node in inferred.graph.node:
        if node.op_type == "Conv":
            # weight (Cout, Cin/groups, k...): every output element takes Cin/groups * k^3 MACs
            out = known(node.output[0])
            flops += 2.0 * float(np.prod(out[1:])) * float(np.prod(weights[node.input[1]][1:]))
        elif node.op_type == "ConvTranspose":
            # weight (Cin, Cout/groups, k...): every input element spreads Cout/groups * k^3 MACs
            source = known(node.input[0])
            flops += 2.0 * float(np.prod(source[1:])) * float(np.prod(weights[node.input[1]][1:]))
    if flops == 0.0:
        raise ValueError(f"{onnx_file}: no convolution found (shape inference failed?)")
    return flops


def _matmul_model(size: int) -> bytes:
    """An ONNX graph of one (size x size) @ (size x size) product, B a constant."""
    weight = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "matmul",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])],
        [numpy_helper.from_array(weight, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what ONNX Runtime of any supported version reads (opset 17)
    return model.SerializeToString()


def matmul_peak(dtype: str, threads: int, size: int = 2048, repeats: int = 5) -> float:
    """Median GFLOP/s of a ``size``-square matrix product in ``dtype`` ("fp32" or "bf16"),
    through the runtime the appliance uses (ONNX Runtime with its preferred provider; the
    bf16 precision hint as ``models.loader`` sets it), so the roof is the one ours runs
    under. Where the CPU has no bf16 instructions, "bf16" runs in fp32."""
    providers = choose_providers()
    session = ort.InferenceSession(
        _matmul_model(size),
        sess_options=session_options(threads),
        providers=provider_entries(providers, threads, bf16=dtype == "bf16"),
    )
    a = np.random.default_rng(1).standard_normal((size, size)).astype(np.float32)
    session.run(None, {"a": a})  # warm-up: compilation, page faults
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, {"a": a})
        times.append(time.perf_counter() - started)
    return 2.0 * size**3 / statistics.median(times) / 1e9


def ensemble_flops(model_dir: Path, modality: str | None = None) -> dict[str, float]:
    """FLOPs per window of the members in ``model_dir`` (those ``modality`` runs), by name."""
    manifest = read_manifest(model_dir)
    members = manifest.members_for(modality) if modality else manifest.members
    return {
        member.name: member_flops(model_dir / member.file, member.patch_size) for member in members
    }


def matmul_peaks(threads: int) -> dict[str, float]:
    """``matmul_peak`` in fp32 and bf16, by dtype."""
    return {dtype: matmul_peak(dtype, threads) for dtype in ("fp32", "bf16")}


def member_rates(
    model_dir: Path, threads: int, batch: int = 2, repeats: int = 5
) -> dict[str, float]:
    """Seconds per window of each member alone (the appliance's sessions, bf16 where the CPU
    has it, ``batch`` windows a call, median of ``repeats``): the networks without the
    sliding window's whole-volume work, to set beside ``ensemble_flops``."""
    ensemble = load_ensemble(model_dir, threads=threads, bf16=True)
    rates = {}
    for loaded in ensemble.members:
        window = (
            np.random.default_rng(2)
            .standard_normal((batch, 1, *loaded.member.patch_size))
            .astype(np.float32)
        )
        loaded.session.run(None, {loaded.input_name: window})  # warm-up
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            loaded.session.run(None, {loaded.input_name: window})
            times.append(time.perf_counter() - started)
        rates[loaded.member.name] = statistics.median(times) / batch
    return rates


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.roofline``: each shipped member's GFLOP per window and the peaks."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models" / "ensemble")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    seconds = member_rates(args.model_dir, args.threads)
    for name, flops in ensemble_flops(args.model_dir).items():
        print(
            f"{name}: {flops / 1e9:.3f} GFLOP per window, {seconds[name] * 1e3:.1f} ms per window "
            f"alone = {flops / seconds[name] / 1e9:.1f} GFLOP/s"
        )
    for dtype, peak in matmul_peaks(args.threads).items():
        print(f"matmul peak {dtype} ({args.threads} threads): {peak:.1f} GFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
