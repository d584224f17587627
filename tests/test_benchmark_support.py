"""What the pipeline benchmark stands on: its quietness check and the reference's members.

Quietness: real processes, real ``/proc``: a child that keeps one core busy is the
benchmark itself (subtracted), burners beside it are foreign work (counted). Every loop
stops by itself. Members: the reference's TorchScript copies come from the shipped ONNX
files alone (no ``make models``) and match them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from benchmarks.pipeline_benchmark import timed_child
from benchmarks.quiet import CpuTimes, Watch, quietness
from benchmarks.roofline import member_flops
from benchmarks.torchscript_members import export_members, weights_from_onnx
from models.builder.config import SHIPPED
from models.builder.determinism import PINNED_KERNELS
from models.builder.train import build_network

MODELS = Path(__file__).resolve().parents[1] / "models" / "ensemble"

BURN = "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end: pass\n"


def _child_cpu(seconds: float) -> float:
    """Run a CPU-bound child for ``seconds`` of CPU; return its CPU time (rusage)."""
    child = subprocess.Popen([sys.executable, "-c", BURN.format(s=seconds)])
    _, status, usage = os.wait4(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return usage.ru_utime + usage.ru_stime


def test_foreign_cpu_is_what_other_processes_used() -> None:
    before = CpuTimes(busy_s=100.0, steal_s=1.0, total_s=1000.0)
    after = CpuTimes(busy_s=118.0, steal_s=2.0, total_s=1020.0)  # 2 cores x 10 s
    alone = quietness(before, after, own_cpu_s=17.0)
    assert round(alone.foreign, 3) == 0.05 and round(alone.steal, 3) == 0.05
    assert alone.quiet
    shared = quietness(before, after, own_cpu_s=8.0)
    assert round(shared.foreign, 3) == 0.5 and not shared.quiet
    assert "foreign CPU 50%" in shared.describe()
    stolen = quietness(before, CpuTimes(busy_s=118.0, steal_s=4.0, total_s=1020.0), 17.0)
    assert round(stolen.steal, 3) == 0.15 and not stolen.quiet


def test_a_busy_neighbour_is_detected_and_the_child_itself_is_not() -> None:
    watch = Watch()
    watch.start()
    alone = watch.stop(_child_cpu(1.5))
    assert alone.foreign < 0.25, alone.describe()  # its own core is not counted
    burners = [
        subprocess.Popen([sys.executable, "-c", BURN.format(s=3.0)])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        watch.start()
        beside = watch.stop(_child_cpu(1.5))
    finally:
        for burner in burners:
            burner.wait(timeout=60)
    assert beside.foreign > alone.foreign + 0.2 and not beside.quiet, beside.describe()


def test_the_timed_sides_run_without_the_builders_kernel_caps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both sides run as at a site: the benchmark process has imported the builder (the
    TorchScript export does), which caps oneDNN at AVX2 in ``os.environ``; the timed
    children must not inherit that."""
    for name, value in PINNED_KERNELS.items():
        monkeypatch.setenv(name, value)
    names = sorted(PINNED_KERNELS)
    check = f"import os, sys; sys.exit(any(n in os.environ for n in {names!r}))"
    timed_child([sys.executable, "-c", check])  # raises when the child exits non-zero
    leaked = f"import os, sys; sys.exit(not any(n in os.environ for n in {names!r}))"
    with pytest.raises(RuntimeError):  # the check itself can fail
        timed_child([sys.executable, "-c", leaked])


def test_reference_members_come_from_the_shipped_onnx_files(tmp_path: Path) -> None:
    written = export_members(MODELS, tmp_path)  # raises unless each copy matches within 1e-4
    ct_members = [m for m in SHIPPED.members if "CT" in m.modalities]  # the benchmark is CT
    assert sorted(p.name for p in written) == sorted(f"{m.name}.ts" for m in ct_members)


def test_a_tampered_onnx_file_cannot_give_its_weights(tmp_path: Path) -> None:
    recipe = SHIPPED.members[0]
    model = onnx.load(str(MODELS / f"{recipe.name}.onnx"))
    del model.graph.initializer[-1]  # one parameter short
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    with pytest.raises(RuntimeError, match="without a named initializer"):
        weights_from_onnx(build_network(recipe), broken)


def test_member_flops_counts_every_convolution(tmp_path: Path) -> None:
    """A 3x3x3 conv 1->4 (padding 1) on 8^3, then a 2x2x2 stride-2 transpose 4->2 to 16^3."""

    conv_w = numpy_helper.from_array(np.zeros((4, 1, 3, 3, 3), np.float32), "conv_w")
    up_w = numpy_helper.from_array(np.zeros((4, 2, 2, 2, 2), np.float32), "up_w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "conv_w"], ["hidden"], pads=[1] * 6),
            helper.make_node("ConvTranspose", ["hidden", "up_w"], ["logits"], strides=[2] * 3),
        ],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, "d", "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)],
        [conv_w, up_w],
    )
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph), str(path))
    conv = 2 * 8**3 * 4 * 27  # every output voxel and channel: 27 MACs
    transpose = 2 * 8**3 * 4 * 2 * 8  # every input element spreads to 2 channels x 8 taps
    assert member_flops(path, (8, 8, 8)) == conv + transpose


def test_member_flops_follows_shapes_through_group_norm() -> None:
    """SegResNet's GroupNorm exports as Shape -> Reshape: every conv after one must count.
    Its first level alone (init conv 1->8, two 8->8 3x3x3 convs on 48^3) is 0.81 GFLOP."""
    first_level = 2 * 48**3 * 27 * (1 * 8 + 2 * 8 * 8)
    assert member_flops(MODELS / "segresnet-b.onnx", (48, 48, 48)) > first_level
