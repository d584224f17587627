"""The shipped ensemble on typical studies no split holds: ``python -m benchmarks.unseen_check``

The locked test split holds six studies per modality, so one study moves its mean Dice by
up to 0.1 (issue 11: MR test Dice 0.78, of which one vessel-sparse study scored 0.30). This
runs the shipped ensemble, through the appliance's own code (inference with the builder's
evaluation settings, fusion, the MR mask rules, the study score and the review flag), on
``--studies`` typical studies per modality whose seeds no split holds and on which no
recipe value, mask rule or threshold was chosen (``UNSEEN_SEEDS``). Per modality it prints
the mean, median and 10th-percentile Dice, the studies under 0.5 (failures) and under
0.85, the share of failures the review flag marks (goal >= 0.95) and the share of the
other studies it marks (false flags; goal <= 0.05).

These seeds measure; they must never choose. A value tuned on them needs fresh seeds to be
measured again (``--first-seed``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.screen_check import Answer, study_answer
from models.builder.evaluate import EVALUATION, FAILURE_DICE
from models.loader import LoadedEnsemble, load_ensemble
from synthetic.case import Modality, generate_case
from synthetic.splits import SPLIT_SEEDS, LoadedCase, case_name

ROOT = Path(__file__).resolve().parents[1]
# Fresh seeds whenever a choice followed what earlier ones showed: 3000-3199 measured
# 3.0.0, and its missed MR failure led to the 3.1.0 study score (chosen on other studies),
# so 3.1.0 is measured on 3200-3399 (the README's table: the default reproduces it).
# 3400-3599 decided against per-modality thresholds, 3600-3999 against an answered-mask
# score and a per-modality false-flag budget (recipe notes): measure the next choice from
# 4000 on (--first-seed).
UNSEEN_SEEDS = range(3200, 3400)
GOAL_DICE = 0.85


@dataclass(frozen=True)
class Summary:
    """One modality's row of the table."""

    modality: str
    studies: int
    mean_dice: float
    median_dice: float
    p10_dice: float
    failures: int
    below_goal: int
    failures_flagged: int
    false_flags: int

    @property
    def recall(self) -> float | None:
        return self.failures_flagged / self.failures if self.failures else None

    @property
    def false_flag_rate(self) -> float | None:
        successes = self.studies - self.failures
        return self.false_flags / successes if successes else None


def check_unseen(seeds: range) -> range:
    """``seeds`` if no split holds any of them, else a ValueError naming the split."""
    for split, taken in SPLIT_SEEDS.items():
        common = set(seeds) & set(taken)
        if common:
            raise ValueError(
                f"seeds {min(common)}-{max(common)} belong to the {split} split: "
                "an unseen-study check needs seeds no split holds"
            )
    return seeds


def answer(ensemble: LoadedEnsemble, seed: int, modality: Modality) -> Answer:
    """The answer (Dice, review flag) to the typical study ``seed`` of ``modality``."""
    case = generate_case(seed, modality)
    study = LoadedCase(case_name(modality, seed), modality, case.image, case.mask, case.geometry)
    return study_answer(ensemble, study, EVALUATION)


def summarise(modality: str, dice: Sequence[float], flagged: Sequence[bool]) -> Summary:
    """One modality's row from each study's Dice and review flag."""
    dices, flags = np.asarray(dice, dtype=float), np.asarray(flagged, dtype=bool)
    failed = dices < FAILURE_DICE
    return Summary(
        modality=modality,
        studies=len(dices),
        mean_dice=float(dices.mean()),
        median_dice=float(np.median(dices)),
        p10_dice=float(np.percentile(dices, 10)),
        failures=int(failed.sum()),
        below_goal=int((dices < GOAL_DICE).sum()),
        failures_flagged=int((failed & flags).sum()),
        false_flags=int((~failed & flags).sum()),
    )


def table(rows: list[Summary]) -> str:
    lines = [
        "| modality | studies | Dice mean | median | 10th pct | Dice < 0.5 | Dice < 0.85 "
        "| failures flagged | false flags |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        recall = "-" if r.recall is None else f"{r.failures_flagged}/{r.failures} ({r.recall:.2f})"
        rate = "-" if r.false_flag_rate is None else f"{r.false_flag_rate:.3f}"
        lines.append(
            f"| {r.modality} | {r.studies} | {r.mean_dice:.4f} | {r.median_dice:.4f} "
            f"| {r.p10_dice:.4f} | {r.failures} | {r.below_goal} | {recall} "
            f"| {r.false_flags}/{r.studies - r.failures} ({rate}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models" / "ensemble")
    parser.add_argument("--studies", type=int, default=len(UNSEEN_SEEDS), help="per modality")
    parser.add_argument("--first-seed", type=int, default=UNSEEN_SEEDS.start)
    parser.add_argument("--modality", choices=("CT", "MR"), action="append")
    args = parser.parse_args(argv)
    if args.studies < 1:
        parser.error("--studies must be at least 1")
    try:
        seeds = check_unseen(range(args.first_seed, args.first_seed + args.studies))
    except ValueError as error:
        parser.error(str(error))
    ensemble = load_ensemble(args.model_dir, threads=2)
    rows = []
    for modality in (Modality(m) for m in (args.modality or ("CT", "MR"))):
        answers = []
        for seed in seeds:
            answers.append(answer(ensemble, seed, modality))
            print(
                f"{case_name(modality, seed)}: Dice {answers[-1].dice:.4f}, "
                f"flagged {answers[-1].flagged}",
                file=sys.stderr,
                flush=True,
            )
        dices, flags = [a.dice for a in answers], [a.flagged for a in answers]
        rows.append(summarise(modality.value, dices, flags))
    print(
        f"{ensemble.manifest.name} {ensemble.manifest.version} on typical studies of seeds "
        f"{seeds.start}-{seeds.stop - 1} (no split holds them; review flag "
        f"{ensemble.manifest.calibration.score} > {ensemble.manifest.calibration.ood_threshold})"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
