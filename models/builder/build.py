"""Build the shipped ensemble end to end: data -> train -> ONNX + parity -> evaluate -> manifest.

Run as ``python -m models.builder`` (``make models``). Every step is seeded; the manifest
records the recipe's results on the locked test split and the shift suite of its seeds,
the failure-flag threshold and the temperature fitted on validation studies (clean and
shifted), failure detection and voxel calibration measured on test, and the drift
reference profile.
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import onnxruntime as ort

from models.builder.config import BuildRecipe
from models.builder.datasets.validation import content_sha256
from models.builder.determinism import PINNED_KERNELS, cpu_capability
from models.builder.evaluate import (
    MIN_VESSEL_ML,
    CalibrationVoxels,
    clean,
    cpu_ms_per_window,
    evaluate_case,
    failure_detection,
    overlap,
    predict_members,
    robustness_table,
    run_studies,
    segmentation_metrics,
    serving,
    shift_suite,
    voxel_calibration,
)
from models.builder.members import onnx_session, train_and_export
from models.builder.model_card import write_model_card
from models.builder.params import build_params
from models.builder.site import (
    plan_site_build,
    read_site_test_cases,
    site_versions,
    synthetic_versions,
    validate_site,
)
from models.digest import sha256_file
from models.features import reference_profile
from models.loader import read_verified
from models.lumen_growth import MrMaskRules
from models.manifest import (
    MANIFEST_NAME,
    Calibration,
    DataLockout,
    EnsembleManifest,
    Member,
    Provenance,
    ReferenceStudy,
    read_manifest,
)
from synthetic.case import GENERATOR_VERSION
from synthetic.splits import LoadedCase, SplitIndex, read_split, read_split_index, write_split

if TYPE_CHECKING:
    from models.builder.tracking import Tracker

log = logging.getLogger(__name__)


def ensure_split(data_dir: Path, split: str, seeds: tuple[int, int]) -> SplitIndex:
    folder = data_dir / split
    try:
        index = read_split_index(folder)
        wanted = [s for s in range(*seeds)]
        if (
            index.generator_version == GENERATOR_VERSION
            and sorted({c.seed for c in index.cases}) == wanted
        ):
            return index
    except FileNotFoundError:
        pass
    log.info("generating the %s split into %s", split, folder)
    return write_split(split, folder, range(*seeds))  # type: ignore[arg-type]


def _code_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _created() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return moment.replace(microsecond=0).isoformat()


def _provenance(code_commit: str, train_sha256: str, val_sha256: str) -> Provenance:
    return Provenance(
        generator_version=GENERATOR_VERSION,
        train_split_sha256=train_sha256,
        val_split_sha256=val_sha256,
        code_commit=code_commit,
        created=_created(),
        libraries={
            # Module versions, not distribution names: onnxruntime comes as
            # onnxruntime-openvino here and as onnxruntime-gpu on GPU builds.
            name: str(importlib.import_module(name).__version__)
            for name in ("torch", "monai", "onnx", "onnxruntime", "numpy", "scipy")
        },
        determinism_tolerance=(
            "same recipe, data and thread count with the pinned AVX2 kernels "
            "(kernel_pins): identical ONNX bytes on any x86-64 machine with AVX2; "
            "metrics from ONNX Runtime equal within 1e-3"
        ),
        kernel_pins=dict(PINNED_KERNELS),
        cpu_capability=cpu_capability(),
    )


def build(
    recipe: BuildRecipe,
    data_dir: Path,
    out_dir: Path,
    work_dir: Path,
    reuse_checkpoints: bool = False,
    tracker: Tracker | None = None,
) -> EnsembleManifest:
    """Train, export and evaluate ``recipe``; with ``recipe.site``, on the site's data too.

    A site dataset is validated before anything trains; its test cases are read (audited,
    locked) again only for the final evaluation. ``tracker``: the MLflow run that gets
    the parameters, data versions and every iteration's loss (``models.builder.tracking``).
    """
    # The commit the build starts from is the code that trains: commits made while it
    # runs (an hour) must not be recorded as its provenance.
    code_commit = _code_commit()
    # A site's dataset is judged first: a broken case must not cost a synthetic split.
    site_data = validate_site(recipe, work_dir) if recipe.site is not None else None
    train_index = ensure_split(data_dir, "train", recipe.train_seeds)
    val_index = ensure_split(data_dir, "val", recipe.val_seeds)
    test_index = ensure_split(data_dir, "test", recipe.test_seeds)
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    train_cases = read_split(data_dir / "train")
    train_sha256 = train_index.content_sha256
    datasets = synthetic_versions([train_index, val_index, test_index])
    plan = None
    if site_data is not None:
        plan = plan_site_build(recipe, train_cases, work_dir, site_data)
        recipe, train_cases = plan.recipe, plan.train_cases
        train_sha256 = content_sha256(train_cases)
        datasets += site_versions(plan, train_sha256)
    if tracker is not None:
        tracker.log_params(build_params(recipe, datasets, code_commit, plan))
        tracker.log_datasets(datasets)
    sessions = train_and_export(
        recipe,
        train_cases,
        train_sha256,
        read_split(data_dir / "val"),
        out_dir,
        work_dir,
        reuse_checkpoints,
        plan,
        tracker,
    )
    provenance = _provenance(code_commit, train_sha256, val_index.content_sha256).model_copy(
        update={
            "datasets": tuple(datasets),
            "mlflow_runs": (tracker.record(recipe.ensemble_name),) if tracker else (),
            "fine_tuned_from": plan.fine_tuned_from if plan else {},
        }
    )
    site_test = read_site_test_cases(plan) if plan is not None else None
    return _evaluate(recipe, sessions, data_dir, out_dir, provenance, site_test=site_test)


def reevaluate(recipe: BuildRecipe, data_dir: Path, out_dir: Path) -> EnsembleManifest:
    """Measure the members already in ``out_dir`` again with this checkout's inference.

    For a change after the networks (fusion, the MR mask rules): the members must
    be the recipe's (same training settings) and match their manifest's hashes; their
    training provenance is kept and the measuring commit recorded beside it.
    """
    shipped = read_manifest(out_dir)
    trained = {m.name: m for m in shipped.members}
    for member_recipe in recipe.members:
        member = trained.get(member_recipe.name)
        if member is None or (
            member.architecture,
            member.architecture_params,
            member.seed,
            tuple(member.input_spacing_mm),
            tuple(member.patch_size),
            member.training_iterations,
            tuple(member.training_modalities),
        ) != (
            member_recipe.architecture,
            member_recipe.architecture_params,
            member_recipe.seed,
            tuple(member_recipe.input_spacing_mm),
            tuple(member_recipe.patch_size),
            member_recipe.iterations,
            tuple(member_recipe.training_modalities),
        ):
            raise ValueError(
                f"member {member_recipe.name!r} of the recipe is not the one in {out_dir}: "
                "its training changed, so it must be retrained (make models)"
            )
        read_verified(out_dir, member)  # raises ModelIntegrityError on a hash mismatch
    # Training never reads the validation split (the export's parity check reads one of
    # its studies, which does not change the bytes), so a larger one may fit the flag
    # threshold and the temperature again; the provenance records the one used.
    val_index = ensure_split(data_dir, "val", recipe.val_seeds)
    sessions = [
        onnx_session(out_dir / trained[m.name].file, recipe.torch_threads) for m in recipe.members
    ]
    provenance = shipped.provenance.model_copy(
        update={
            "evaluation_commit": _code_commit(),
            "created": _created(),
            "val_split_sha256": val_index.content_sha256,
        }
    )
    cpu_ms = {m.name: m.cpu_ms_per_window for m in shipped.members}
    return _evaluate(recipe, sessions, data_dir, out_dir, provenance, cpu_ms)


def _evaluate(
    recipe: BuildRecipe,
    sessions: list[ort.InferenceSession],
    data_dir: Path,
    out_dir: Path,
    provenance: Provenance,
    cpu_ms: dict[str, float | None] | None = None,
    site_test: list[LoadedCase] | None = None,
) -> EnsembleManifest:
    """Validation (flag threshold, temperature), the locked test split, the manifest.

    ``cpu_ms``: the members' CPU milliseconds per window when they were measured before
    (on a quiet machine, with the same bytes); otherwise they are measured now.
    """
    val_cases = read_split(data_dir / "val")
    test_index = ensure_split(data_dir, "test", recipe.test_seeds)
    members: list[Member] = []
    log.info("validation: clean split and shift suite (fits the flag threshold, temperature)")
    val_voxels = CalibrationVoxels()
    rules = MrMaskRules(recipe.mr_faint_component_ratio, recipe.mr_lumen_growth)
    val_outcomes = run_studies(clean(val_cases), sessions, recipe.members, rules, val_voxels)
    val_outcomes += run_studies(shift_suite(recipe, "val"), sessions, recipe.members, rules)

    log.info("evaluating on the locked test split and the shift suite of its seeds")
    test_cases = read_split(
        data_dir / "test",
        expected_sha256=test_index.content_sha256,
        purpose="builder: final evaluation of the ensemble on the locked test split "
        "and the shift suite of its seeds",
    )
    test_voxels = CalibrationVoxels()
    test_members = [predict_members(case, sessions, recipe.members) for case in test_cases]
    test_outcomes = [
        evaluate_case(case, stack, "clean", "none", rules, test_voxels)
        for case, stack in zip(test_cases, test_members, strict=True)
    ]
    test_outcomes += run_studies(shift_suite(recipe, "test"), sessions, recipe.members, rules)

    detection, rule = failure_detection(val_outcomes, test_outcomes)
    calibration_block = voxel_calibration(val_voxels, test_voxels)
    val_clean = [o for o in val_outcomes if o.family == "clean"]
    profile_rows = [
        {**(o.features or {}), "uncertainty_score": o.scores[detection.score]} for o in val_clean
    ]
    for index, member_recipe in enumerate(recipe.members):
        destination = out_dir / f"{member_recipe.name}.onnx"
        single = [  # this member alone, on the test studies it is run on
            overlap(case, stack[serving(recipe.members, case.modality.value).index(index)] >= 0.5)
            for case, stack in zip(test_cases, test_members, strict=True)
            if case.modality.value in member_recipe.modalities
        ]
        members.append(
            Member(
                name=member_recipe.name,
                file=destination.name,
                sha256=sha256_file(destination),
                size_bytes=destination.stat().st_size,
                architecture=member_recipe.architecture,
                architecture_params=member_recipe.architecture_params,
                seed=member_recipe.seed,
                input_spacing_mm=member_recipe.input_spacing_mm,
                patch_size=member_recipe.patch_size,
                normalisation=member_recipe.normalisation,
                onnx_opset=recipe.onnx_opset,
                training_iterations=member_recipe.iterations,
                modalities=member_recipe.modalities,
                training_modalities=member_recipe.training_modalities,
                metrics=segmentation_metrics(single),
                cpu_ms_per_window=(
                    cpu_ms[member_recipe.name]
                    if cpu_ms is not None
                    else cpu_ms_per_window(sessions[index], member_recipe.patch_size)
                ),
            )
        )
    clean_test = [o for o in test_outcomes if o.family == "clean"]
    site_outcomes = [
        evaluate_case(case, predict_members(case, sessions, recipe.members), "site", "none", rules)
        for case in site_test or []
    ]

    manifest = EnsembleManifest(
        name=recipe.ensemble_name,
        version=recipe.version,
        members=tuple(members),
        ensemble_metrics=segmentation_metrics(clean_test),
        data=DataLockout(
            test_split_sha256=test_index.content_sha256,
            test_cases=len(test_index.cases),
            site_test_sha256=_site_test_sha256(provenance) if site_test else None,
            site_test_cases=len(site_test) if site_test else None,
        ),
        provenance=provenance,
        calibration=Calibration(
            score=detection.score,
            ood_threshold=detection.threshold,
            min_vessel_ml=MIN_VESSEL_ML,
            temperature=calibration_block.temperature,
            validation_scores={o.name: o.scores[detection.score] for o in val_clean},
            rule=rule,
            mr_faint_component_ratio=rules.faint_ratio,
            mr_lumen_growth=rules.growth,
        ),
        reference_profile=reference_profile(profile_rows),
        reference_features=tuple(
            ReferenceStudy(modality=o.modality, features=row)
            for o, row in zip(val_clean, profile_rows, strict=True)
        ),
        robustness=robustness_table(test_outcomes, detection.score, detection.threshold),
        failure_detection=detection,
        voxel_calibration=calibration_block,
        validation_metrics=segmentation_metrics([o for o in val_outcomes if o.family == "clean"]),
        site_test_metrics=segmentation_metrics(site_outcomes),
    )
    (out_dir / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n")
    write_model_card(manifest, out_dir)
    return manifest


def _site_test_sha256(provenance: Provenance) -> str | None:
    return next((d.content_sha256 for d in provenance.datasets if d.role == "site-test"), None)
