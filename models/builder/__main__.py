"""``python -m models.builder``: rebuild the ensemble (``make models``) or a smoke run."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from models.builder.build import build, reevaluate
from models.builder.config import SHIPPED, SMOKE
from models.builder.model_card import write_model_card
from models.manifest import read_manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.builder", description=__doc__)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="seconds-long run of the same code path (CI); never the shipped models",
    )
    parser.add_argument("--data-dir", type=Path, default=Path("var/data"))
    parser.add_argument("--out-dir", type=Path, default=Path("models/ensemble"))
    parser.add_argument("--work-dir", type=Path, default=Path("var/builder"))
    parser.add_argument(
        "--reuse-checkpoints",
        action="store_true",
        help="skip training members whose checkpoint matches the recipe",
    )
    parser.add_argument(
        "--reevaluate",
        action="store_true",
        help="measure the members in --out-dir again with this checkout's inference and "
        "post-processing (verified against their manifest); train nothing",
    )
    parser.add_argument(
        "--card-only",
        action="store_true",
        help="redraw the model card from the manifest in --out-dir; train nothing",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.card_only:
        card = write_model_card(read_manifest(args.out_dir), args.out_dir)
        print(f"model card: {card}")
        return 0
    recipe = SMOKE if args.smoke else SHIPPED
    if args.smoke and args.out_dir == Path("models/ensemble"):
        parser.error("--smoke must not overwrite the shipped ensemble: pass --out-dir")
    if args.reevaluate:
        manifest = reevaluate(recipe, args.data_dir, args.out_dir)
    else:
        manifest = build(recipe, args.data_dir, args.out_dir, args.work_dir, args.reuse_checkpoints)
    for modality, metrics in manifest.ensemble_metrics.items():
        print(
            f"ensemble {modality}: Dice {metrics.dice:.4f}  clDice {metrics.cldice:.4f}  "
            f"HD95 {metrics.hd95_mm:.2f} mm  ({metrics.cases} test cases)"
        )
    detection = manifest.failure_detection
    if detection is not None:
        print(
            f"review flag: {detection.score} > {detection.threshold:.4f}; test recall "
            f"{detection.recall}, clean false flags {detection.false_flag_rate_clean}, "
            f"AUROC {detection.auroc}, AURC {detection.aurc}"
        )
    if manifest.voxel_calibration is not None:
        calibration = manifest.voxel_calibration
        print(
            f"voxel calibration: T {calibration.temperature}, test ECE "
            f"{calibration.test_ece_before} -> {calibration.test_ece_after}"
        )
    print(f"manifest and model card in {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
