"""``make demo``: the main job on the bundled synthetic CT angiography study.

Generates the demo study (seeded: always the same voxels and UIDs) as a DICOM series with
a localizer and shuffled file names, runs the MAP pipeline on it with the shipped
ensemble (models verified against their manifest first), and prints a summary: series
found, Dice against the known ground truth, uncertainty score and flag, seconds per stage
and where the SEG is. Beside each series' results it writes ``vessel-preview.png``: the
maximum-intensity projection of the study with the vessel SEG over it and the uncertainty
map beside it (:mod:`operators.preview`, the same pictures as the web console's), read
back from the written SEG and map, not from the pipeline's memory.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pydicom

from map_app.config import AppConfig
from map_app.pipeline import Pipeline
from map_app.stack import ensure_holoscan_stack
from models.metrics import dice
from operators.errors import PipelineError
from operators.preview import PreviewError, mip_picture, png_bytes
from operators.preview.results import read_result_volumes
from synthetic.case import Modality, generate_case
from synthetic.dicom_series import DicomQuirks, write_series

DEMO_SEED = 7
PREVIEW_NAME = "vessel-preview.png"


def seg_mask_in_slice_order(seg_path: Path, sop_instance_uids: list[str]) -> np.ndarray:
    """The binary SEG as a [k, j, i] array aligned with the source slices' order."""
    seg = pydicom.dcmread(seg_path)
    frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    index = {uid: k for k, uid in enumerate(sop_instance_uids)}
    mask = np.zeros((len(sop_instance_uids), seg.Rows, seg.Columns), dtype=np.uint8)
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        mask[index[source]] = frame
    return mask


def write_preview(outputs: dict[str, str], source_files: list[Path]) -> Path:
    """``vessel-preview.png`` next to the series' SEG: MIP with the SEG | uncertainty."""
    seg = Path(outputs["seg"])
    volumes = read_result_volumes(seg, Path(outputs["uncertainty_map"]), source_files)
    target = seg.parent / PREVIEW_NAME
    target.write_bytes(png_bytes(mip_picture(volumes)))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m map_app.demo", description=__doc__)
    parser.add_argument("--models", type=Path, default=Path("models/ensemble"))
    parser.add_argument("--output", type=Path, default=Path("output"))
    args = parser.parse_args(argv)

    case = generate_case(DEMO_SEED, Modality.CT)
    study_dir = args.output / "input-study"
    shutil.rmtree(study_dir, ignore_errors=True)
    written = write_series(case, study_dir, DicomQuirks(shuffle=True, localizer=True))
    try:
        pipeline = Pipeline(args.models, AppConfig())
        report = pipeline.run(study_dir, args.output / "result")
    except PipelineError as error:
        print(f"demo: error [{error.reason}]: {error.message}", file=sys.stderr)
        return error.exit_code

    manifest = pipeline.ensemble.manifest
    print(
        f"study: synthetic CT angiography (seed {DEMO_SEED}), {len(written.files)} axial "
        f"slices + {len(written.localizer_files)} localizer, shuffled names -> {study_dir}"
    )
    print(
        f"models: {manifest.name} {manifest.version}, {len(manifest.members)} members "
        f"verified against manifest SHA-256, providers {', '.join(pipeline.ensemble.providers)}"
    )
    for outcome in report.series:
        print(
            f"series {outcome.series_instance_uid} ({outcome.selection_name}, "
            f"{outcome.shape} at {outcome.spacing_mm} mm): {outcome.status}"
        )
        if outcome.status != "done":
            print(f"  error: {outcome.error}")
            continue
        # The writer stores head-first slices in case order, so slice k is case slice k.
        mask = seg_mask_in_slice_order(
            Path(outcome.outputs["seg"]), list(written.sop_instance_uids)
        )
        flag = "FLAGGED for review" if outcome.out_of_distribution else "in distribution"
        print(f"  Dice vs ground truth: {dice(mask, case.mask):.4f}")
        print(
            f"  vessel volume {outcome.vessel_volume_ml:.3f} mL; uncertainty score "
            f"{outcome.uncertainty_score:.4f} (threshold {outcome.ood_threshold:.4f}): {flag}"
        )
        for kind, path in outcome.outputs.items():
            print(f"  {kind:<16} {path}")
        try:
            picture = write_preview(outcome.outputs, list(written.files))
        except PreviewError as error:  # the results stand; only their picture is missing
            print(f"  picture: not written: {error}", file=sys.stderr)
        else:
            print(f"  picture (PNG)    {picture}  (MIP with the vessel SEG | uncertainty map)")
    print("seconds per stage: " + ", ".join(f"{k} {v:.2f}" for k, v in report.timings_s.items()))
    print(f"report: {args.output / 'result' / 'report.json'}")
    return 0


if __name__ == "__main__":
    ensure_holoscan_stack("map_app.demo")
    sys.exit(main())
