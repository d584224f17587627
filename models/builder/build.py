"""Build the shipped ensemble end to end: data -> train -> ONNX + parity -> evaluate -> manifest.

Run as ``python -m models.builder`` (``make models``). Every step is seeded; the manifest
records the recipe's results on the locked test split, the uncertainty calibration from the
validation split and the drift reference profile.
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from models.builder.config import BuildRecipe, MemberRecipe
from models.builder.export import export_with_parity
from models.builder.train import build_network, prepare_cases, train_member
from models.features import reference_profile, study_features
from models.inference import SlidingWindowSettings, member_probability
from models.loader import sha256_of
from models.manifest import (
    MANIFEST_NAME,
    Calibration,
    DataLockout,
    EnsembleManifest,
    Member,
    Provenance,
    ReferenceStudy,
    SegmentationMetrics,
)
from models.metrics import cldice, dice, hd95
from models.uncertainty import study_uncertainty_score, voxel_uncertainty
from synthetic.case import GENERATOR_VERSION
from synthetic.splits import LoadedCase, SplitIndex, read_split, read_split_index, write_split

log = logging.getLogger(__name__)
EVALUATION = SlidingWindowSettings(overlap=0.25, batch_size=2)
# Validation studies are in distribution by construction; the margin keeps the false
# alarm rate on them at zero while inputs unlike the training data (noise, inverted
# contrast, heavy noise) score well above it (tests/test_ood.py).
OOD_MARGIN = 1.25


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


@dataclass
class CasePrediction:
    case: LoadedCase
    members: np.ndarray  # (M, z, y, x)


def predict_cases(
    cases: list[LoadedCase], sessions: list[ort.InferenceSession], recipes: tuple[MemberRecipe, ...]
) -> list[CasePrediction]:
    results = []
    for case in cases:
        stack = []
        for session, recipe in zip(sessions, recipes, strict=True):

            def predict(batch: np.ndarray, s: ort.InferenceSession = session) -> np.ndarray:
                return np.asarray(s.run(None, {"image": batch})[0])

            stack.append(
                member_probability(
                    predict,
                    case.image,
                    case.geometry.spacing,
                    recipe.input_spacing_mm,
                    recipe.patch_size,
                    recipe.normalisation,
                    EVALUATION,
                )
            )
        results.append(CasePrediction(case, np.stack(stack)))
    return results


def _metrics(pairs: list[tuple[np.ndarray, LoadedCase]]) -> dict[str, SegmentationMetrics]:
    by_modality: dict[str, list[tuple[float, float, float]]] = {}
    for probability, case in pairs:
        predicted = probability >= 0.5
        by_modality.setdefault(case.modality.value, []).append(
            (
                dice(predicted, case.mask),
                cldice(predicted, case.mask),
                hd95(predicted, case.mask, case.geometry.spacing),
            )
        )
    return {
        modality: SegmentationMetrics(
            cases=len(rows),
            dice=round(float(np.mean([r[0] for r in rows])), 4),
            cldice=round(float(np.mean([r[1] for r in rows])), 4),
            hd95_mm=round(float(np.mean([r[2] for r in rows])), 3),
        )
        for modality, rows in sorted(by_modality.items())
    }


def build(
    recipe: BuildRecipe,
    data_dir: Path,
    out_dir: Path,
    work_dir: Path,
    reuse_checkpoints: bool = False,
) -> EnsembleManifest:
    train_index = ensure_split(data_dir, "train", recipe.train_seeds)
    val_index = ensure_split(data_dir, "val", recipe.val_seeds)
    test_index = ensure_split(data_dir, "test", recipe.test_seeds)
    train_cases = read_split(data_dir / "train")
    val_cases = read_split(data_dir / "val")
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)

    members: list[Member] = []
    sessions = []
    for member_recipe in recipe.members:
        checkpoint = work_dir / f"{member_recipe.name}.pt"
        recipe_file = work_dir / f"{member_recipe.name}.recipe.json"
        if (
            reuse_checkpoints
            and checkpoint.is_file()
            and recipe_file.is_file()
            and recipe_file.read_text() == member_recipe.model_dump_json()
        ):
            network = build_network(member_recipe)
            network.load_state_dict(torch.load(checkpoint, weights_only=True))
            network.eval()
            log.info("%s: reusing checkpoint %s", member_recipe.name, checkpoint)
        else:
            network = train_member(train_cases, member_recipe, recipe.torch_threads)
            torch.save(network.state_dict(), checkpoint)
            recipe_file.write_text(member_recipe.model_dump_json())
        real = prepare_cases(val_cases[:1], member_recipe)[0].image
        pz, py, px = member_recipe.patch_size
        real_patch = np.pad(
            real,
            [(0, max(0, p - n)) for n, p in zip(real.shape, (pz, py, px), strict=True)],
            mode="edge",
        )[:pz, :py, :px]
        destination = out_dir / f"{member_recipe.name}.onnx"
        difference = export_with_parity(
            network,
            member_recipe.patch_size,
            recipe.onnx_opset,
            destination,
            real_patch,
            recipe.parity_tolerance,
            seed=member_recipe.seed,
        )
        log.info("%s: exported, parity max |dp| = %.2e", member_recipe.name, difference)
        options = ort.SessionOptions()
        options.intra_op_num_threads = recipe.torch_threads
        sessions.append(
            ort.InferenceSession(
                str(destination), sess_options=options, providers=["CPUExecutionProvider"]
            )
        )

    log.info("calibrating on the validation split")
    val_predictions = predict_cases(val_cases, sessions, recipe.members)
    val_scores: dict[str, float] = {}
    profile_rows = []
    reference_studies = []
    for prediction in val_predictions:
        maps = voxel_uncertainty(prediction.members)
        score = study_uncertainty_score(prediction.members)
        val_scores[prediction.case.name] = round(score, 6)
        profile_rows.append(
            study_features(
                prediction.case.image,
                prediction.case.geometry.spacing,
                maps.mean_probability,
                score,
            )
        )
        reference_studies.append(
            ReferenceStudy(modality=prediction.case.modality.value, features=profile_rows[-1])
        )
    threshold = max(max(val_scores.values()) * OOD_MARGIN, 1e-4)

    log.info("evaluating on the locked test split")
    test_cases = read_split(
        data_dir / "test",
        expected_sha256=test_index.content_sha256,
        purpose="builder: final evaluation of the ensemble on the locked test split",
    )
    test_predictions = predict_cases(test_cases, sessions, recipe.members)
    for index, member_recipe in enumerate(recipe.members):
        destination = out_dir / f"{member_recipe.name}.onnx"
        members.append(
            Member(
                name=member_recipe.name,
                file=destination.name,
                sha256=sha256_of(destination),
                size_bytes=destination.stat().st_size,
                architecture=member_recipe.architecture,
                architecture_params=member_recipe.architecture_params,
                seed=member_recipe.seed,
                input_spacing_mm=member_recipe.input_spacing_mm,
                patch_size=member_recipe.patch_size,
                normalisation=member_recipe.normalisation,
                onnx_opset=recipe.onnx_opset,
                training_iterations=member_recipe.iterations,
                metrics=_metrics([(p.members[index], p.case) for p in test_predictions]),
            )
        )
    ensemble_metrics = _metrics([(p.members.mean(axis=0), p.case) for p in test_predictions])

    manifest = EnsembleManifest(
        name=recipe.ensemble_name,
        version=recipe.version,
        members=tuple(members),
        ensemble_metrics=ensemble_metrics,
        data=DataLockout(
            test_split_sha256=test_index.content_sha256, test_cases=len(test_index.cases)
        ),
        provenance=Provenance(
            generator_version=GENERATOR_VERSION,
            train_split_sha256=train_index.content_sha256,
            val_split_sha256=val_index.content_sha256,
            code_commit=_code_commit(),
            created=_created(),
            libraries={
                # Module versions, not distribution names: onnxruntime comes as
                # onnxruntime-openvino here and as onnxruntime-gpu on GPU builds.
                name: str(importlib.import_module(name).__version__)
                for name in ("torch", "monai", "onnx", "onnxruntime", "numpy", "scipy")
            },
            determinism_tolerance=(
                "same recipe, data and thread count on the same CPU type: identical weights; "
                "elsewhere test Dice equal within 1e-3"
            ),
        ),
        calibration=Calibration(
            ood_threshold=threshold,
            validation_scores=val_scores,
            rule=f"{OOD_MARGIN} x the highest validation study score",
        ),
        reference_profile=reference_profile(profile_rows),
        reference_features=tuple(reference_studies),
    )
    (out_dir / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n")
    return manifest
