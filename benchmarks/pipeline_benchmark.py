"""Benchmark: our MAP pipeline vs the MONAI Deploy reference composition, side by side.

    python -m benchmarks.pipeline_benchmark [--sizes 256x256x128,512x512x256] [--repeats 3]

Per study size (columns x rows x slices, CT angiography at 0.5 x 0.5 x 1.0 mm, one axial
series, ground truth known) both sides run as fresh processes, alternating, ``--repeats``
times: ours is ``python -m map_app`` (which also writes the uncertainty map, the SR and
report.json), the reference is ``benchmarks/reference_app.py`` (SDK operators, TorchScript
copies of the same members, same overlap 0.25, no TTA on either side). The table gives
medians of end-to-end wall time (process start to exit, models loaded inside), per-stage
seconds, peak RSS (from the kernel's accounting of each child) and Dice of each side's SEG
against the truth, and the ratios. Nothing here is a test: run it on a quiet machine.

Each run is watched (``benchmarks.quiet``): the CPU other processes used and the
hypervisor stole while it ran; the load average is read once, before the first run. A
table with any run that was not quiet is marked NOT QUIET and the benchmark exits 3
(``--allow-noisy`` prints the table and exits 0): figures from a busy machine are not
results.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.quiet import Quietness, Watch, idle_at_start, load_per_core
from benchmarks.roofline import ensemble_flops
from benchmarks.torchscript_members import BENCHMARK_MODALITY, export_members
from containers.wheelhouse import find_uv
from map_app.demo import seg_mask_in_slice_order
from map_app.stack import raise_stack_limit
from models.builder.determinism import PINNED_KERNELS
from models.metrics import dice
from synthetic.case import Modality, generate_case
from synthetic.dicom_series import write_series

ROOT = Path(__file__).resolve().parents[1]
SPACING = (1.0, 0.5, 0.5)
# What either side imports from this checkout (compile_bytecode).
SOURCE_PACKAGES = (
    "benchmarks",
    "compliance",
    "map_app",
    "models",
    "operators",
    "settings",
    "synthetic",
)
STAGES = ("load", "select", "volume", "inference", "uncertainty", "write SEG")


@dataclass
class Run:
    wall_s: float
    peak_rss_mb: float
    dice: float
    quietness: Quietness
    stages: dict[str, float] = field(default_factory=dict)
    windows: dict[str, int] = field(default_factory=dict)  # member -> windows run (ours)
    skipped: dict[str, int] = field(default_factory=dict)  # member -> windows screened out


def _stack_limit() -> None:
    raise_stack_limit()  # the child runs Holoscan: its 32 MiB stack (map_app.stack)


def site_environment() -> dict[str, str]:
    """This process's environment without the builder's CPU kernel caps.

    Exporting the reference's TorchScript members imports ``models.builder``, which caps
    oneDNN, MKL and PyTorch at AVX2 in ``os.environ`` for reproducible training
    (``models.builder.determinism``). No site runs either side with those caps: inherited,
    they took OpenVINO's bf16 away from ours (0.8 s of a 6.6 s small study) and AVX-512
    from the reference's PyTorch.
    """
    return {k: v for k, v in os.environ.items() if k not in PINNED_KERNELS}


def site_matmul_peaks(threads: int) -> dict[str, float]:
    """``matmul_peaks`` measured in a child process with ``site_environment()``."""
    probe = (
        "import json, sys; from benchmarks.roofline import matmul_peaks; "
        "print(json.dumps(matmul_peaks(int(sys.argv[1]))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(threads)],
        cwd=ROOT,
        env={**site_environment(), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    peaks: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return peaks


def timed_child(
    command: list[str], extra_env: dict[str, str] | None = None
) -> tuple[float, float, Quietness]:
    """Run a child process: wall seconds, peak RSS MiB (the kernel's rusage) and how quiet
    the rest of the machine was meanwhile."""
    env = {
        **site_environment(),
        "PYTHONPATH": str(ROOT),
        "HOLOSCAN_LOG_LEVEL": "ERROR",
        **(extra_env or {}),
    }
    watch = Watch()
    watch.start()
    started = time.perf_counter()
    child = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_stack_limit,
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    quietness = watch.stop(own_cpu_s=usage.ru_utime + usage.ru_stime)
    stderr = child.stderr.read().decode() if child.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed:\n{stderr[-3000:]}")
    return wall, usage.ru_maxrss / 1024.0, quietness


def make_study(size: tuple[int, int, int], folder: Path) -> tuple[np.ndarray, list[str]]:
    """A CT study of ``size`` = (columns, rows, slices); returns truth mask and SOP UIDs."""
    columns, rows, slices = size
    fov = (
        (slices - 1) * SPACING[0] + 0.5,
        (rows - 1) * SPACING[1] + 0.25,
        (columns - 1) * SPACING[2] + 0.25,
    )
    case = generate_case(4242, Modality.CT, spacing=SPACING, fov_mm=fov)
    if case.image.shape != (slices, rows, columns):
        raise RuntimeError(f"generated {case.image.shape}, wanted {(slices, rows, columns)}")
    shutil.rmtree(folder, ignore_errors=True)
    written = write_series(case, folder)
    return case.mask, list(written.sop_instance_uids)


def appliance_python(work: Path) -> Path:
    """The appliance's runtime environment (no torch, no MONAI core), as the MAP image has.

    Ours runs in it, so its start-up is what a site sees; the reference needs torch and
    MONAI core and runs in the development environment.
    """
    venv = work / "runtime-venv"
    if not (venv / "bin" / "python").exists():
        env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
        subprocess.run(
            [find_uv() or "uv", "sync", "--frozen", "--no-default-groups", "-q"],
            cwd=ROOT,
            env=env,
            check=True,
        )
    return venv / "bin" / "python"


def run_ours(
    python: Path,
    study: Path,
    out: Path,
    truth: np.ndarray,
    uids: list[str],
    providers: str | None = None,
    screen: bool = True,
) -> Run:
    shutil.rmtree(out, ignore_errors=True)
    environment = {"MINIVESS_WINDOW_SCREEN": "true" if screen else "false"}
    if providers:
        environment["MINIVESS_PROVIDERS"] = providers
    wall, rss, quietness = timed_child(
        [
            str(python),
            "-m",
            "map_app",
            "-i",
            str(study),
            "-o",
            str(out),
            "-m",
            str(ROOT / "models" / "ensemble"),
        ],
        environment,
    )
    report = json.loads((out / "report.json").read_text())
    series = report["series"][0]
    mask = seg_mask_in_slice_order(Path(series["outputs"]["seg"]), uids)
    counts = series["windows"]
    return Run(
        wall,
        rss,
        dice(mask, truth),
        quietness,
        dict(report["timings_s"]),
        {name: count["run"] for name, count in counts.items()},
        {name: count["skipped"] for name, count in counts.items()},
    )


def compile_bytecode(python: Path) -> None:
    """Byte-compile everything ``python`` imports, as a deployed environment has it.

    pip compiles packages when it installs them and the MAP image runs compileall over the
    application (Dockerfile); uv does not, and this machine sets PYTHONDONTWRITEBYTECODE,
    so without this step every timed run of either side would first compile its sources
    (seconds of start-up no site pays).
    """
    paths = subprocess.run(
        [str(python), "-c", "import site, sys; print('\\n'.join(site.getsitepackages()))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    packages = [str(ROOT / name) for name in SOURCE_PACKAGES]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    # Some packages ship files that are not Python 3.11 (templates, old tests): compileall
    # reports them and goes on; what compiles is what is imported.
    subprocess.run(
        [str(python), "-m", "compileall", "-q", "-j", "0", *paths, *packages],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )


def run_reference(study: Path, out: Path, models: Path, truth: np.ndarray, uids: list[str]) -> Run:
    shutil.rmtree(out, ignore_errors=True)
    timings = out.with_suffix(".json")
    wall, rss, quietness = timed_child(
        [
            sys.executable,
            "-m",
            "benchmarks.reference_app",
            "--input",
            str(study),
            "--output",
            str(out),
            "--models",
            str(models),
            "--timings",
            str(timings),
        ]
    )
    stages = json.loads(timings.read_text())
    stages["inference"] = sum(v for k, v in stages.items() if k.startswith("inference:"))
    stages["uncertainty"] = stages.pop("average", 0.0)
    [seg] = list(out.rglob("*.dcm"))
    return Run(wall, rss, dice(seg_mask_in_slice_order(seg, uids), truth), quietness, stages)


def _median(runs: list[Run], attribute: str) -> float:
    return statistics.median(getattr(run, attribute) for run in runs)


def _stage(runs: list[Run], name: str) -> float:
    return statistics.median(run.stages.get(name, 0.0) for run in runs)


def machine() -> str:
    """The CPU model and core count, so a table says where its figures came from."""
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "unknown CPU",
    )  # fmt: skip
    return f"{model}, {os.cpu_count()} cores"


def print_table(size: str, sides: dict[str, list[Run]]) -> bool:
    """The side-by-side table (the reference last); returns whether every run was quiet."""
    *ours_names, reference_name = sides
    reference = sides[reference_name]
    runs = [run for side in sides.values() for run in side]
    noisy = [run.quietness for run in runs if not run.quietness.quiet]
    verdict = "quiet" if not noisy else f"NOT QUIET ({len(noisy)}/{len(runs)} runs)"
    print(f"\n## study {size} (median of {len(reference)} runs each, side by side): {verdict}")
    header = "".join(f" {name:>12} |" for name in sides)
    ratios = "".join(f" {'ref/' + name:>12} |" for name in ours_names)
    print(f"| {'measure':<28} |{header}{ratios}")
    print(f"|{'-' * 30}|" + f"{'-' * 14}|" * (len(sides) + len(ours_names)))
    rows: list[tuple[str, list[float]]] = [
        ("end-to-end wall (s)", [_median(side, "wall_s") for side in sides.values()])
    ]
    for name, pick in (("min", min), ("max", max)):
        extremes = [pick(run.wall_s for run in side) for side in sides.values()]
        rows.append((f"  {name} of {len(reference)} (s)", extremes))
    rows += [
        (f"  stage {name} (s)", [_stage(side, name) for side in sides.values()]) for name in STAGES
    ]
    rows.append(("peak RSS (MiB)", [_median(side, "peak_rss_mb") for side in sides.values()]))
    rows.append(("Dice vs truth", [_median(side, "dice") for side in sides.values()]))
    for label, values in rows:
        cells = "".join(f" {value:12.3f} |" for value in values)
        theirs = values[-1]
        quotients = "".join(
            f" {theirs / mine:12.2f} |" if mine > 0 and "Dice" not in label else f" {'':12} |"
            for mine in values[:-1]
        )
        print(f"| {label:<28} |{cells}{quotients}")
    print(
        "(ours' 'uncertainty' is the entropy/MI maps; the reference's is its averaging; "
        "ours also writes a Parametric Map and an SR, counted in its end-to-end time)"
    )
    worst = max(runs, key=lambda run: run.quietness.foreign).quietness
    print(f"busiest run: {worst.describe()}")
    return not noisy


def print_limits(
    size: str, sides: dict[str, list[Run]], flops: dict[str, float], peaks: dict[str, float]
) -> None:
    """FLOPs each side ran and its achieved GFLOP/s in the inference stage, against the
    measured matmul peak. The reference runs every window (ours' run + screened out)."""
    first = sides["ours"][0]
    every = {m: first.windows.get(m, 0) + first.skipped.get(m, 0) for m in flops}
    ours_names = [name for name in sides if name != "reference"]
    print(f"\n### arithmetic, study {size}")
    print("| member | GFLOP per window | windows (all) |" + "".join(
        f" windows run, {name} |" for name in ours_names
    ))  # fmt: skip
    print("|---|---|---|" + "---|" * len(ours_names))
    for member, per_window in flops.items():
        runs = "".join(f" {sides[name][0].windows.get(member, 0)} |" for name in ours_names)
        print(f"| {member} | {per_window / 1e9:.3f} | {every[member]} |{runs}")
    for name, side in sides.items():
        windows = every if name == "reference" else side[0].windows
        total = sum(flops[m] * count for m, count in windows.items() if m in flops)
        seconds = _stage(side, "inference")
        rate = total / seconds / 1e9 if seconds > 0 else 0.0
        print(
            f"{name}: {total / 1e9:.0f} GFLOP in {seconds:.1f} s of inference = {rate:.1f} GFLOP/s"
            f" ({rate / peaks['fp32']:.0%} of the fp32 matmul peak, "
            f"{rate / peaks['bf16']:.0%} of bf16)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="256x256x128,512x512x256")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument(
        "--ours-providers",
        default=None,
        help="ONNX Runtime providers for ours, e.g. "
        "TensorrtExecutionProvider,CUDAExecutionProvider (GPU variant)",
    )
    parser.add_argument(
        "--ours-python",
        type=Path,
        default=None,
        help="interpreter of the appliance environment (default: build one "
        "without torch under WORK/runtime-venv)",
    )
    parser.add_argument(
        "--unscreened",
        action="store_true",
        help="add a side: ours with the lumen screen off (MINIVESS_WINDOW_SCREEN=false)",
    )
    parser.add_argument(
        "--allow-noisy",
        action="store_true",
        help="exit 0 even when a run was not quiet (the table still says NOT QUIET)",
    )
    args = parser.parse_args(argv)
    # Read before our own preparation (compiling, tracing), whose load would count against it.
    quiet, load = idle_at_start(), load_per_core()
    python = args.ours_python or appliance_python(args.work)
    for interpreter in (python, Path(sys.executable)):
        compile_bytecode(interpreter)
    models = args.work / "torchscript"
    export_members(ROOT / "models" / "ensemble", models)
    print(f"machine: {machine()}; load/core before the benchmark started {load:.2f}"
          f"{'' if quiet else ' (NOT QUIET: something else is running)'}")  # fmt: skip
    flops = ensemble_flops(ROOT / "models" / "ensemble", BENCHMARK_MODALITY)
    peaks = site_matmul_peaks(threads=os.cpu_count() or 1)
    print(f"matmul peak ({os.cpu_count()} threads, 2048^2, median of 5): "
          f"fp32 {peaks['fp32']:.1f} GFLOP/s, bf16 {peaks['bf16']:.1f} GFLOP/s")  # fmt: skip
    for text in args.sizes.split(","):
        size = tuple(int(v) for v in text.lower().split("x"))
        study = args.work / f"study-{text}"
        truth, uids = make_study(size, study)  # type: ignore[arg-type]
        sides: dict[str, list[Run]] = {"ours": []}
        if args.unscreened:
            sides["ours-unscreened"] = []
        sides["reference"] = []
        for repeat in range(args.repeats):
            for name, side in sides.items():
                if name == "reference":
                    side.append(
                        run_reference(study, args.work / f"ref-{text}", models, truth, uids)
                    )
                else:
                    out = args.work / f"{name}-{text}"
                    screen = name == "ours"
                    side.append(
                        run_ours(python, study, out, truth, uids, args.ours_providers, screen)
                    )
            times = ", ".join(f"{name} {side[-1].wall_s:.1f} s" for name, side in sides.items())
            print(f"{text} run {repeat + 1}: {times}", flush=True)
        quiet = print_table(text, sides) and quiet
        print_limits(text, sides, flops, peaks)
    if not quiet:
        print("\nNOT QUIET: other work used the machine during some runs; these figures are "
              "not results (rerun on a quiet machine)", file=sys.stderr)  # fmt: skip
        return 0 if args.allow_noisy else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
