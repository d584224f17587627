"""What the lumen screen costs: ``python -m benchmarks.screen_check [--model-dir ...]``

The screen (``models.screen``) skips sliding windows that cannot hold a lumen. Skipping work
is only a gain when the answer stays the same, so this runs the shipped ensemble twice on
every study, with and without the screen, through the appliance's own inference code: the
locked test split (typical physics) and its shift suite (every family and severity, the
builder's test shift seeds), and the benchmark's large CT study (``--large``). Per modality,
family and severity it prints the windows run and the inference seconds either way, the mean
Dice without and with the screen, the largest Dice loss of a single study and how many
studies the review flag marks either way. A Dice loss above 0.005 on any study is printed as
such. The appliance runs the screen by default because this table showed none: ensemble
2.0.0 (no study of the test split or shift suite lost Dice, every flag the same, the
512x512x256 CT from Dice 0.28 to 0.86) and ensemble 3.0.0 (2026-12-07, 144 studies: none
lost Dice, three gained 0.001-0.004, every flag the same; it skipped up to 18.6 % of the
windows of a shift family's studies, none of the MR low-contrast ones).

``--overlap X`` measures a second lever the same way: the shipped settings (screen on,
overlap 0.25) against the same with sliding-window overlap X (fewer windows, coarser
blending). Seconds are summed over a row's studies, in-process and alternating, in fp32
as the builder evaluates: read them as a ratio, not as the appliance's timing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from models.builder.config import SHIPPED
from models.builder.evaluate import EVALUATION, shift_suite_cases
from models.inference import ensemble_probabilities
from models.loader import LoadedEnsemble, load_ensemble
from models.metrics import dice
from models.screen import WindowTally
from models.windows import SlidingWindowSettings
from operators.segmentation.fusion import segmentation_result
from synthetic.case import Modality, generate_case
from synthetic.splits import LoadedCase, read_split, write_split

ROOT = Path(__file__).resolve().parents[1]
DICE_LOSS_LIMIT = 0.005


@dataclass(frozen=True)
class Answer:
    dice: float
    flagged: bool
    windows: WindowTally
    seconds: float  # the inference stage (ensemble_probabilities)


def study_answer(
    ensemble: LoadedEnsemble, case: LoadedCase, settings: SlidingWindowSettings
) -> Answer:
    """Dice, review flag, window tally and inference seconds of one study, answered through
    the appliance's code (inference, fusion, MR mask rules, study score and flag)."""
    tallies: dict[str, WindowTally] = {}
    started = time.perf_counter()
    members = ensemble_probabilities(
        ensemble,
        case.image,
        case.geometry.spacing,
        settings,
        modality=case.modality.value,
        tallies=tallies,
    )
    seconds = time.perf_counter() - started
    tally = WindowTally(
        sum(t.run for t in tallies.values()), sum(t.skipped for t in tallies.values())
    )
    result = segmentation_result(
        ensemble, members, None, case.geometry.spacing, case.image, case.modality.value
    )
    return Answer(dice(result.mask, case.mask), result.out_of_distribution, tally, seconds)


def _studies(
    test_dir: Path, test_sha256: str, large: bool
) -> Iterator[tuple[LoadedCase, str, str]]:
    if not (test_dir / "split.json").is_file():
        write_split("test", test_dir)
    for case in read_split(test_dir, test_sha256, purpose="benchmark: screen check"):
        yield case, "clean", "none"
    yield from shift_suite_cases(range(*SHIPPED.test_shift_seeds), None, ("moderate", "severe"))
    if large:  # the pipeline benchmark's 512x512x256 CT (benchmarks.pipeline_benchmark)
        spacing = (1.0, 0.5, 0.5)
        big = generate_case(4242, Modality.CT, spacing=spacing, fov_mm=(255.5, 255.75, 255.75))
        yield (
            LoadedCase("ct-04242-large", Modality.CT, big.image, big.mask, big.geometry),
            "large_fov",
            "512x512x256",
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models" / "ensemble")
    parser.add_argument("--large", action="store_true", help="also the 512x512x256 CT study")
    parser.add_argument(
        "--overlap",
        type=float,
        default=None,
        help="compare the shipped settings with this sliding-window overlap instead of "
        "the screen off",
    )
    args = parser.parse_args(argv)
    if args.overlap is None:
        lever = "Lumen screen"
        before, after = replace(EVALUATION, screen=False), EVALUATION  # off, on
    else:
        lever = f"Overlap {EVALUATION.overlap} -> {args.overlap}"
        before, after = EVALUATION, replace(EVALUATION, overlap=args.overlap)
    ensemble = load_ensemble(args.model_dir, threads=2)
    rows: dict[tuple[str, str, str], list[tuple[Answer, Answer]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        test_dir = Path(scratch) / "test"
        sha = ensemble.manifest.data.test_split_sha256
        for case, family, severity in _studies(test_dir, sha, args.large):
            first, second = (
                study_answer(ensemble, case, before),
                study_answer(ensemble, case, after),
            )
            rows.setdefault((case.modality.value, family, severity), []).append((first, second))
            print(
                f"{case.name}: Dice {first.dice:.4f} -> {second.dice:.4f}",
                file=sys.stderr,
                flush=True,
            )
    print(f"{lever} on {args.model_dir.name} {ensemble.manifest.version}")
    print(
        "| modality | family | severity | studies | windows run before / after "
        "| inference s before / after | Dice before | Dice after | worst loss "
        "| flagged before / after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    worst_overall = 0.0
    for (modality, family, severity), found in rows.items():
        dices = np.asarray([(a.dice, b.dice) for a, b in found])
        loss = float(np.max(dices[:, 0] - dices[:, 1]))
        worst_overall = max(worst_overall, loss)
        mark = " **over 0.005**" if loss > DICE_LOSS_LIMIT else ""
        print(
            f"| {modality} | {family} | {severity} | {len(found)} "
            f"| {sum(a.windows.run for a, _ in found)} / {sum(b.windows.run for _, b in found)} "
            f"| {sum(a.seconds for a, _ in found):.1f} / {sum(b.seconds for _, b in found):.1f} "
            f"| {dices[:, 0].mean():.4f} | {dices[:, 1].mean():.4f} | {loss:+.4f}{mark} "
            f"| {sum(a.flagged for a, _ in found)} / {sum(b.flagged for _, b in found)} |"
        )
    pairs = [pair for found in rows.values() for pair in found]
    print(
        f"\nIn all: windows run {sum(a.windows.run for a, _ in pairs)} / "
        f"{sum(b.windows.run for _, b in pairs)}, inference "
        f"{sum(a.seconds for a, _ in pairs):.1f} / {sum(b.seconds for _, b in pairs):.1f} s; "
        f"largest Dice loss of one study: {worst_overall:+.4f} (limit {DICE_LOSS_LIMIT})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
