"""What the lumen screen costs: ``python -m benchmarks.screen_check [--model-dir ...]``

The screen (``models.screen``) skips sliding windows that cannot hold a lumen. Skipping
work is only a gain when the answer stays the same, so this runs the shipped ensemble
twice on every study, with and without the screen, through the appliance's own inference
code: the locked test split (typical physics) and its shift suite (every family and
severity, the builder's test shift seeds), and the benchmark's large CT study
(``--large``). Per modality, family and severity it prints the share of windows skipped,
the mean Dice without and with the screen, the largest Dice loss of a single study and
how many studies the review flag marks either way. A Dice loss above 0.005 on any study
is printed as such. The appliance runs the screen by default because this table showed
none: ensemble 2.0.0 (no study of the test split or shift suite lost Dice, every flag the
same, the 512x512x256 CT from Dice 0.28 to 0.86) and ensemble 3.0.0 (2026-12-07, 144
studies: none lost Dice, three gained 0.001-0.004, every flag the same; it skipped up to
18.6 % of the windows of a shift family's studies, none of the MR low-contrast ones).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.builder.config import SHIPPED
from models.builder.evaluate import EVALUATION, shift_suite_cases
from models.inference import ensemble_probabilities
from models.loader import LoadedEnsemble, load_ensemble
from models.metrics import dice
from models.screen import WindowTally
from operators.segmentation.fusion import segmentation_result
from synthetic.case import Modality, generate_case
from synthetic.splits import LoadedCase, read_split, write_split

ROOT = Path(__file__).resolve().parents[1]
DICE_LOSS_LIMIT = 0.005


def _answer(
    ensemble: LoadedEnsemble, case: LoadedCase, screen: bool
) -> tuple[float, bool, WindowTally]:
    """Dice, review flag and window tally of one study."""
    tallies: dict[str, WindowTally] = {}
    members = ensemble_probabilities(
        ensemble,
        case.image,
        case.geometry.spacing,
        replace(EVALUATION, screen=screen),
        modality=case.modality.value,
        tallies=tallies,
    )
    tally = WindowTally(
        sum(t.run for t in tallies.values()), sum(t.skipped for t in tallies.values())
    )
    result = segmentation_result(
        ensemble, members, None, case.geometry.spacing, case.image, case.modality.value
    )
    return dice(result.mask, case.mask), result.out_of_distribution, tally


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
    args = parser.parse_args(argv)
    ensemble = load_ensemble(args.model_dir, threads=2)
    rows: dict[tuple[str, str, str], list[tuple[float, float, bool, bool, float]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        test_dir = Path(scratch) / "test"
        sha = ensemble.manifest.data.test_split_sha256
        for case, family, severity in _studies(test_dir, sha, args.large):
            plain, plain_flag, _ = _answer(ensemble, case, screen=False)
            screened, screened_flag, tally = _answer(ensemble, case, screen=True)
            key = (case.modality.value, family, severity)
            rows.setdefault(key, []).append(
                (plain, screened, plain_flag, screened_flag, tally.skipped_fraction)
            )
            print(f"{case.name}: Dice {plain:.4f} -> {screened:.4f}", file=sys.stderr, flush=True)
    print(f"Lumen screen on {args.model_dir.name} {ensemble.manifest.version}")
    print(
        "| modality | family | severity | studies | windows skipped | Dice off | Dice on "
        "| worst loss | flagged off / on |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    worst_overall = 0.0
    for (modality, family, severity), found in rows.items():
        values = np.asarray([r[:2] for r in found])
        loss = float(np.max(values[:, 0] - values[:, 1]))
        worst_overall = max(worst_overall, loss)
        mark = " **over 0.005**" if loss > DICE_LOSS_LIMIT else ""
        print(
            f"| {modality} | {family} | {severity} | {len(found)} "
            f"| {np.mean([r[4] for r in found]):.1%} | {values[:, 0].mean():.4f} "
            f"| {values[:, 1].mean():.4f} | {loss:+.4f}{mark} "
            f"| {sum(r[2] for r in found)} / {sum(r[3] for r in found)} |"
        )
    print(f"\nLargest Dice loss of one study: {worst_overall:+.4f} (limit {DICE_LOSS_LIMIT})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
