"""Tiny site datasets for the builder tests, written from the synthetic generator.

nnU-Net raw layout with NIfTI files, and DICOM series (``synthetic.dicom_series``) with
their DICOM SEG written by the appliance's own SEG writer (``operators.dicom_output``).
Small grids (1 mm, 24 x 32 x 32 voxels) keep a fine-tune run to seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from operators.dicom_input.loader import scan_dicom_folder
from operators.dicom_input.volume import series_to_volume
from operators.dicom_output.seg import build_vessel_segmentation
from operators.geometry import VoxelGeometry
from operators.nifti.io import write_nifti
from operators.values import SegmentationResult
from synthetic.case import SyntheticCase, generate_case
from synthetic.dicom_series import write_series

SPACING = (1.0, 1.0, 1.0)
FOV_MM = (24.0, 32.0, 32.0)


def small_case(seed: int, modality: str = "CT") -> SyntheticCase:
    return generate_case(seed, modality, spacing=SPACING, fov_mm=FOV_MM)


def write_nnunet(
    root: Path,
    train_seeds: list[int],
    test_seeds: list[int],
    modality: str = "CT",
    labels: dict[str, int] | None = None,
) -> Path:
    """``root`` as an nnU-Net v2 raw dataset; returns it."""
    for folder in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for split, seeds in (("Tr", train_seeds), ("Ts", test_seeds)):
        for seed in seeds:
            case = small_case(seed, modality)
            name = f"site_{seed:03d}"
            write_nifti(root / f"images{split}" / f"{name}_0000.nii.gz", case.image, case.geometry)
            write_nifti(
                root / f"labels{split}" / f"{name}.nii.gz",
                case.mask.astype(np.uint8),
                case.geometry,
            )
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": modality},
                "labels": labels or {"background": 0, "vessel": 1},
                "numTraining": len(train_seeds),
                "file_ending": ".nii.gz",
            }
        )
    )
    return root


def write_label(
    root: Path, split: str, seed: int, label: np.ndarray, geometry: VoxelGeometry
) -> None:
    write_nifti(root / f"labels{split}" / f"site_{seed:03d}.nii.gz", label, geometry)


def write_dicom_case(folder: Path, seed: int, modality: str = "CT") -> None:
    """One study: the image series and a BINARY SEG of its vessel mask, in ``folder``."""
    case = small_case(seed, modality)
    write_series(case, folder / "image")
    scan = scan_dicom_folder(folder / "image")
    volume = series_to_volume(scan.image_series[0], 2**30)
    mask = case.mask.astype(np.uint8)
    zeros = np.zeros(mask.shape, np.float32)
    result = SegmentationResult(
        mean_probability=mask.astype(np.float32),
        mask=mask,
        predictive_entropy=zeros,
        expected_entropy=zeros,
        mutual_information=zeros,
        uncertainty_score=0.0,
        ood_threshold=1.0,
        model_name="annotation",
        model_version="1.0.0",
        member_names=("annotator",),
    )
    build_vessel_segmentation(volume, result).save_as(folder / "seg.dcm")


def write_dicom_dataset(root: Path, train_seeds: list[int], test_seeds: list[int]) -> Path:
    for split, seeds in (("train", train_seeds), ("test", test_seeds)):
        for seed in seeds:
            write_dicom_case(root / split / f"case-{seed}", seed)
    return root
