"""The inference stage on a GPU, as the lent GPU machines can run it (issue 13).

Those machines have Python 3.12, PyTorch (CUDA 13), numpy and a CPU-only ONNX Runtime;
no onnxruntime-gpu, TensorRT, pydantic, pydicom or Holoscan, and nothing can be fetched.
So this file needs only numpy and torch there (its window geometry and grid come from the
numpy-only ``models.windows`` and ``models.resampling``; run it as a module from the
checkout's root): the members travel as TorchScript copies
recovered from the shipped ONNX files (``benchmarks.torchscript_members``, checked there
against ONNX Runtime within 1e-4), with their grid and normalisation in ``members.json``.

It runs the appliance's inference stage on the GPU: CT normalisation, trilinear
resampling to each member's grid (the same mapping as ``models.resampling``), every
sliding window (the same windows and Gaussian blending, ``models.windows``; no lumen
screen, so this is the whole work), test-time flips, softmax, and resampling back; the
fused probability is the members' mean. It prints p50/p95 of the stage against the 2 s
target. What it proves: how fast these networks and this sliding window run on that GPU
through PyTorch (bf16 autocast). What only a site image with ONNX Runtime-GPU/TensorRT
can show: the appliance's own GPU path (``benchmarks/gpu_benchmark.sh``), DICOM in and
out, and TensorRT's kernels.

    python -m benchmarks.gpu_inference_check prepare --out var/gpu-check      # here
    python3 -m benchmarks.gpu_inference_check run --members var/gpu-check    # there
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from models.resampling import resampled_shape
from models.windows import SlidingWindowSettings, gaussian_importance, window_starts

TARGET_S = 2.0
FLIPS = ((2,), (3,), (4,))  # z, y, x of a (batch, channel, z, y, x) tensor


def importance(patch: list[int], device: torch.device) -> torch.Tensor:
    """``models.windows.gaussian_importance`` on the device."""
    weights = gaussian_importance(patch, SlidingWindowSettings().sigma_scale)
    return torch.from_numpy(weights).to(device)


def resample(
    volume: torch.Tensor, source: list[float], target: list[float], shape: list[int]
) -> torch.Tensor:
    """Trilinear, axis by axis, output voxel i at source index i * target / source, edges
    continued: the mapping of ``models.resampling.resample``."""
    out = volume
    for axis in range(3):
        n = out.shape[axis]
        coordinates = torch.arange(shape[axis], device=out.device, dtype=torch.float64)
        coordinates = (coordinates * (target[axis] / source[axis])).clamp(0, n - 1)
        lower = coordinates.floor().long().clamp(max=n - 1)
        upper = (lower + 1).clamp(max=n - 1)
        view = [1, 1, 1]
        view[axis] = shape[axis]
        fraction = (coordinates - lower).float().reshape(view)
        below = out.index_select(axis, lower)
        out = below + (out.index_select(axis, upper) - below) * fraction
    return out


def member_probability(
    network: torch.jit.ScriptModule,
    member: dict,
    image: torch.Tensor,
    spacing: list[float],
    overlap: float,
    batch_size: int,
    flips: bool,
) -> torch.Tensor:
    """One member's vessel probability on the study's grid (CT)."""
    norm = member["normalisation"]
    centre, width = norm["ct_centre_hu"], norm["ct_width_hu"]
    normalised = ((image - centre) / width).clamp(*norm["ct_clip"])
    native = (spacing[0], spacing[1], spacing[2])
    grid = list(resampled_shape(image.shape, native, member["spacing"]))
    prepared = resample(normalised, spacing, member["spacing"], grid)
    patch = member["patch"]
    pads = [max(0, p - n) for n, p in zip(prepared.shape, patch, strict=True)]
    if any(pads):
        prepared = torch.nn.functional.pad(
            prepared[None, None], (0, pads[2], 0, pads[1], 0, pads[0]), mode="replicate"
        )[0, 0]
    weights = importance(patch, image.device)
    accum = torch.zeros_like(prepared)
    total = torch.zeros_like(prepared)
    corners = [
        (z, y, x)
        for z in window_starts(prepared.shape[0], patch[0], overlap)
        for y in window_starts(prepared.shape[1], patch[1], overlap)
        for x in window_starts(prepared.shape[2], patch[2], overlap)
    ]
    pz, py, px = patch
    for first in range(0, len(corners), batch_size):
        chunk = corners[first : first + batch_size]
        batch = torch.stack([prepared[z : z + pz, y : y + py, x : x + px] for z, y, x in chunk])[
            :, None
        ]
        passes = [()] + (list(FLIPS) if flips else [])
        probability = torch.zeros((len(chunk), pz, py, px), device=image.device)
        for axes in passes:
            inputs = batch.flip(axes) if axes else batch
            logits = network(inputs).float()
            vessel = torch.sigmoid(logits[:, 1] - logits[:, 0])[:, None]
            probability += (vessel.flip(axes) if axes else vessel)[:, 0]
        probability /= len(passes)
        for (z, y, x), window in zip(chunk, probability, strict=True):
            accum[z : z + pz, y : y + py, x : x + px] += window * weights
            total[z : z + pz, y : y + py, x : x + px] += weights
    blended = (accum / total)[: grid[0], : grid[1], : grid[2]]
    return resample(blended, member["spacing"], spacing, list(image.shape))


def load_members(folder: Path, device: torch.device) -> list[tuple[dict, torch.jit.ScriptModule]]:
    described = json.loads((folder / "members.json").read_text())["members"]
    return [
        (member, torch.jit.load(str(folder / member["file"]), map_location=device).eval())
        for member in described
    ]


def inference_stage(members, image, spacing, overlap, batch_size, flips, bf16) -> torch.Tensor:
    with torch.no_grad(), torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=bf16):
        stack = [
            member_probability(n, m, image, spacing, overlap, batch_size, flips) for m, n in members
        ]
    return torch.stack(stack).mean(0)


def test_volume(shape: list[int], device: torch.device) -> torch.Tensor:
    """Soft tissue (40 +/- 15 HU) with contrast-filled tubes (350 HU); content does not
    change the work without the screen, but keeps the probabilities meaningful."""
    generator = torch.Generator(device=device).manual_seed(0)
    volume = 40.0 + 15.0 * torch.randn(shape, generator=generator, device=device)
    z, y, x = (torch.arange(n, device=device, dtype=torch.float32) for n in shape)
    for k in range(4):
        cy, cx = shape[1] * (0.2 + 0.2 * k), shape[2] * (0.8 - 0.15 * k)
        tube = (
            (y[None, :, None] - cy) ** 2 + (x[None, None, :] - cx - 0.1 * z[:, None, None]) ** 2
        ) < 36.0
        volume = torch.where(tube, torch.full_like(volume, 350.0), volume)
    return volume


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gpu_inference_check run")
    parser.add_argument("--members", type=Path, required=True)
    parser.add_argument("--shape", default="512x512x300", help="columns x rows x slices")
    parser.add_argument("--spacing", default="1.0,0.5,0.5", help="mm: slices, rows, columns")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--overlap", type=float, default=SlidingWindowSettings().overlap)
    parser.add_argument("--no-flips", action="store_true", help="without test-time flips")
    parser.add_argument("--fp32", action="store_true", help="without bf16 autocast")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    columns, rows, slices = (int(v) for v in args.shape.split("x"))
    spacing = [float(v) for v in args.spacing.split(",")]
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    members = load_members(args.members, device)
    image = test_volume([slices, rows, columns], device)
    bf16, flips = not args.fp32, not args.no_flips

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        inference_stage(members, image, spacing, args.overlap, args.batch_size, flips, bf16)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    warm = once()  # cudnn autotuning and lazy allocation
    times = sorted(once() for _ in range(args.repeats))
    p50 = float(np.percentile(times, 50))
    p95 = float(np.percentile(times, 95))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    figures = {
        "device": name,
        "torch": torch.__version__,
        "shape": [slices, rows, columns],
        "members": [m["name"] for m, _ in members],
        "flips": flips,
        "bf16": bf16,
        "batch_size": args.batch_size,
        "warm_up_s": round(warm, 3),
        "p50_s": round(p50, 3),
        "p95_s": round(p95, 3),
        "target_s": TARGET_S,
        "repeats": args.repeats,
    }
    print("| device | study | members + TTA | p50 s | p95 s | target s | meets |")
    print("|---|---|---|---|---|---|---|")
    passes = 4 if flips else 1
    print(
        f"| {name} | {columns}x{rows}x{slices} | {len(members)} x {passes} passes | "
        f"{p50:.3f} | {p95:.3f} | {TARGET_S} | {'yes' if p95 <= TARGET_S else 'no'} |"
    )
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))
    return 0


def prepare(argv: list[str]) -> int:
    """Here: TorchScript copies (in the members' own z, y, x order) and ``members.json``."""
    from benchmarks.torchscript_members import plain_members

    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_inference_check prepare")
    parser.add_argument("--models", type=Path, default=Path("models/ensemble"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    plain_members(args.models, args.out)
    print(f"members for the GPU check written to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("prepare", "run"):
        print(__doc__)
        return 2
    return prepare(argv[1:]) if argv[0] == "prepare" else run(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
