"""``make demo``: the main job on the bundled synthetic CT angiography study.

Generates the demo study (seeded, so always the same), writes it as a DICOM series, checks
the shipped ensemble against its manifest, runs ensemble inference with uncertainty and
prints a summary with the Dice against the known ground truth. Until the MAP pipeline
(DICOM in -> DICOM-SEG out) lands, the outputs are NIfTI volumes under ``output/``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from models.inference import SlidingWindowSettings, ensemble_probabilities, fuse
from models.loader import ModelIntegrityError, load_ensemble
from models.metrics import dice
from models.uncertainty import study_uncertainty_score, voxel_uncertainty
from synthetic.case import Modality, generate_case
from synthetic.nifti import write_nifti

DEMO_SEED = 7


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m map_app.demo", description=__doc__)
    parser.add_argument("--models", type=Path, default=Path("models/ensemble"))
    parser.add_argument("--output", type=Path, default=Path("output"))
    args = parser.parse_args(argv)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    case = generate_case(DEMO_SEED, Modality.CT)
    study_dir = args.output / "input-study"
    from synthetic.dicom_series import write_series

    written = write_series(case, study_dir)
    timings["generate study"] = time.perf_counter() - started

    started = time.perf_counter()
    try:
        ensemble = load_ensemble(args.models)
    except (ModelIntegrityError, FileNotFoundError) as error:
        print(f"demo: {error}", file=sys.stderr)
        return 3
    timings["verify + load models"] = time.perf_counter() - started

    started = time.perf_counter()
    members = ensemble_probabilities(
        ensemble, case.image.astype(np.float32), case.geometry.spacing, SlidingWindowSettings()
    )
    manifest = ensemble.manifest
    probability = fuse(members, manifest.fusion)
    timings["ensemble inference"] = time.perf_counter() - started

    started = time.perf_counter()
    maps = voxel_uncertainty(members)
    score = study_uncertainty_score(maps)
    flagged = score > manifest.calibration.ood_threshold
    timings["uncertainty"] = time.perf_counter() - started

    started = time.perf_counter()
    args.output.mkdir(parents=True, exist_ok=True)
    mask = (probability >= manifest.probability_threshold).astype(np.uint8)
    write_nifti(args.output / "vessel_mask.nii.gz", mask, case.geometry)
    write_nifti(args.output / "vessel_probability.nii.gz", probability, case.geometry)
    write_nifti(args.output / "mutual_information.nii.gz", maps.mutual_information, case.geometry)
    timings["write outputs"] = time.perf_counter() - started

    print(
        f"study: synthetic CT angiography, seed {DEMO_SEED}, {len(written.files)} slices "
        f"{case.geometry.shape} at {case.geometry.spacing} mm -> {study_dir}"
    )
    print(
        f"models: {manifest.name} {manifest.version}, {len(ensemble.members)} members verified "
        f"(SHA-256), providers {', '.join(ensemble.providers)}"
    )
    print(f"Dice vs ground truth: {dice(mask, case.mask):.4f}")
    print(
        f"uncertainty score {score:.5f} (OOD threshold {manifest.calibration.ood_threshold:.5f})"
        f" -> {'FLAGGED for review' if flagged else 'in distribution'}"
    )
    for stage, seconds in timings.items():
        print(f"  {stage:<22} {seconds:7.2f} s")
    print(f"outputs: {args.output}/vessel_mask.nii.gz (and probability, mutual information)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
