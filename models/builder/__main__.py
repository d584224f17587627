"""``python -m models.builder``: rebuild the ensemble (``make models``) or a smoke run."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from models.builder.build import build, reevaluate
from models.builder.config import SHIPPED, SMOKE, BuildRecipe, SiteDataRecipe
from models.builder.datasets import DatasetLayoutError, DatasetValidationError, DataVersionError
from models.builder.model_card import write_model_card
from models.builder.site import FineTuneSourceError, validate_site
from models.builder.tracking import resolve_uri, tracked_build, ui_command
from models.manifest import EnsembleManifest, read_manifest
from synthetic.splits import TestSetLockoutError

EX_DATAERR = 65  # sysexits: the input data was incorrect


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
    site = parser.add_argument_group(
        "a site's own annotated studies (README: Rebuilding the models)",
    )
    site.add_argument("--site-data", type=Path, help="nnU-Net raw dataset or DICOM+SEG folder")
    site.add_argument("--site-format", choices=("auto", "nnunet", "dicom-seg"), default="auto")
    site.add_argument(
        "--synthetic-share",
        type=float,
        default=0.5,
        help="share of training cases drawn from the synthetic generator (0 = site only)",
    )
    site.add_argument(
        "--fine-tune-from",
        type=Path,
        help="folder of the builder's member checkpoints (<member>.pt) to fine-tune from; "
        "without it the members are trained from scratch",
    )
    site.add_argument(
        "--reference-dir",
        type=Path,
        default=Path("models/ensemble"),
        help="the ONNX ensemble the checkpoints must reproduce before fine-tuning",
    )
    site.add_argument("--fine-tune-iterations", type=int)
    site.add_argument(
        "--check-site-data",
        action="store_true",
        help="validate --site-data and print its cases and content hashes; train nothing "
        "(the read of its test cases is audited and their hash locked like any other)",
    )
    parser.add_argument("--recipe", type=Path, help="a BuildRecipe as JSON (overrides --smoke)")
    parser.add_argument("--version", help="the ensemble version to build (x.y.z)")
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking store or server (default: $MLFLOW_TRACKING_URI, else "
        "sqlite:///var/mlflow/mlflow.db)",
    )
    parser.add_argument("--no-tracking", action="store_true", help="record no MLflow run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.card_only:
        card = write_model_card(read_manifest(args.out_dir), args.out_dir)
        print(f"model card: {card}")
        return 0
    recipe = _recipe(args)
    if args.smoke and args.out_dir == Path("models/ensemble"):
        parser.error("--smoke must not overwrite the shipped ensemble: pass --out-dir")
    if (
        recipe.site is not None
        and not args.check_site_data
        and args.out_dir == Path("models/ensemble")
    ):
        parser.error("a site build must not overwrite the shipped ensemble: pass --out-dir")
    try:
        return _run(args, recipe)
    except (DatasetLayoutError, DatasetValidationError, DataVersionError) as error:
        print(f"site dataset refused: {error}", file=sys.stderr)
    except (TestSetLockoutError, FineTuneSourceError) as error:
        print(f"refused: {error}", file=sys.stderr)
    return EX_DATAERR


def _run(args: argparse.Namespace, recipe: BuildRecipe) -> int:
    if args.check_site_data:
        if recipe.site is None:
            print("--check-site-data needs --site-data", file=sys.stderr)
            return 2
        dataset = validate_site(recipe, args.work_dir)
        print(
            f"site dataset {dataset.root} ({dataset.format}): labels {dataset.labels}; "
            f"{len(dataset.train)} training cases, SHA-256 {dataset.train_sha256}; "
            f"{dataset.test_cases} test cases"
            + (f", SHA-256 {dataset.test_sha256} (locked)" if dataset.test_sha256 else "")
        )
        return 0
    run_line = ""
    if args.reevaluate:
        manifest = reevaluate(recipe, args.data_dir, args.out_dir)
    elif args.no_tracking:
        manifest = build(recipe, args.data_dir, args.out_dir, args.work_dir, args.reuse_checkpoints)
    else:
        tracked = tracked_build(
            recipe,
            args.data_dir,
            args.out_dir,
            args.work_dir,
            args.tracking_uri,
            args.reuse_checkpoints,
        )
        manifest = tracked.manifest
        run_line = (
            f"MLflow run {tracked.run.run_id} (experiment {tracked.run.experiment_id}), "
            f"registered model {recipe.ensemble_name} version {tracked.model_version}\n"
            f"look at it with: {ui_command(resolve_uri(args.tracking_uri))}"
        )
    _report(manifest)
    print(f"manifest and model card in {args.out_dir}")
    if run_line:
        print(run_line)
    return 0


def _recipe(args: argparse.Namespace) -> BuildRecipe:
    if args.recipe is not None:
        recipe = BuildRecipe.model_validate_json(args.recipe.read_text())
    else:
        recipe = SMOKE if args.smoke else SHIPPED
    if args.version:
        recipe = recipe.model_copy(update={"version": args.version})
    if args.site_data is not None:
        site = SiteDataRecipe(
            path=args.site_data,
            format=args.site_format,
            synthetic_share=args.synthetic_share,
            start_from="checkpoints" if args.fine_tune_from else "scratch",
            checkpoint_dir=args.fine_tune_from,
            reference_dir=args.reference_dir,
            fine_tune_iterations=args.fine_tune_iterations,
        )
        recipe = recipe.model_copy(update={"site": site})
    # Validated again: model_copy does not check the updated fields.
    return BuildRecipe.model_validate(recipe.model_dump())


def _report(manifest: EnsembleManifest) -> None:
    for modality, metrics in manifest.site_test_metrics.items():
        print(
            f"site test {modality}: Dice {metrics.dice:.4f}  clDice {metrics.cldice:.4f}  "
            f"HD95 {metrics.hd95_mm:.2f} mm  ({metrics.cases} cases)"
        )
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


if __name__ == "__main__":
    sys.exit(main())
