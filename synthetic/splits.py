"""Train / validation / test splits of synthetic cases, and the test-set lockout.

Splits are disjoint seed ranges, so a split is fully determined by its name and the
generator version. Each split is written as NIfTI pairs plus ``split.json``. The content
digest of a split (SHA-256 over every case's voxels and spacing, independent of file
compression) is what the model manifest records for the locked test split: reading the
test split with an expected digest that does not match raises ``TestSetLockoutError``
before a single case is returned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel

from compliance.audit.events import record_test_set_access
from operators.geometry import VoxelGeometry
from operators.nifti.io import read_nifti, write_nifti
from synthetic.appearance import AppearanceProfile
from synthetic.case import GENERATOR_VERSION, Modality, generate_case

SplitName = Literal["train", "val", "test"]

# Disjoint seed ranges; both modalities are rendered for every seed. Training studies
# get randomised physics (domain randomisation), validation and test typical ones.
SPLIT_SEEDS: dict[str, range] = {
    "train": range(0, 64),
    # 200 per modality since 3.1.0 (12 before): the review-flag threshold is a 95th
    # percentile of clean validation scores, and the score is chosen by how it separates
    # validation failures (about 1 MR study in 40), so both need hundreds of studies.
    "val": range(1000, 1200),
    # 50 per modality since 3.1.1 (6 before): one failed study in six took the MR mean
    # from about 0.88 to 0.78, so six could not say whether a 0.85 goal was met.
    "test": range(2000, 2050),
}
SPLIT_PROFILES: dict[str, AppearanceProfile] = {
    "train": "randomised",
    "val": "typical",
    "test": "typical",
}


class TestSetLockoutError(RuntimeError):
    """The locked test split on disk is not the one the models were evaluated on."""

    __test__ = False  # not a pytest test class


class SplitCase(BaseModel):
    name: str
    modality: Modality
    seed: int
    image_file: str
    mask_file: str


class SplitIndex(BaseModel):
    """``split.json``: what a split folder holds and its content digest."""

    split: SplitName
    generator_version: str
    content_sha256: str
    cases: list[SplitCase]


@dataclass(frozen=True)
class LoadedCase:
    name: str
    modality: Modality
    image: np.ndarray
    mask: np.ndarray
    geometry: VoxelGeometry


def case_name(modality: Modality, seed: int) -> str:
    return f"{modality.value.lower()}-{seed:05d}"


def _digest_update(
    digest: hashlib._Hash, name: str, image: np.ndarray, mask: np.ndarray, geometry: VoxelGeometry
) -> None:
    spacing = ",".join(f"{s:.4f}" for s in geometry.spacing)
    digest.update(f"{name}|{image.dtype.str}|{image.shape}|{spacing}\n".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    digest.update(np.ascontiguousarray(mask, dtype=np.uint8).tobytes())


def write_split(split: SplitName, out_dir: Path, seeds: range | None = None) -> SplitIndex:
    """Generate every case of ``split`` into ``out_dir`` and write its ``split.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    cases: list[SplitCase] = []
    for seed in seeds if seeds is not None else SPLIT_SEEDS[split]:
        for modality in Modality:
            name = case_name(modality, seed)
            case = generate_case(seed, modality, appearance=SPLIT_PROFILES[split])
            write_nifti(out_dir / f"{name}_image.nii.gz", case.image, case.geometry)
            write_nifti(out_dir / f"{name}_mask.nii.gz", case.mask, case.geometry)
            _digest_update(digest, name, case.image, case.mask, case.geometry)
            cases.append(
                SplitCase(
                    name=name,
                    modality=modality,
                    seed=seed,
                    image_file=f"{name}_image.nii.gz",
                    mask_file=f"{name}_mask.nii.gz",
                )
            )
    index = SplitIndex(
        split=split,
        generator_version=GENERATOR_VERSION,
        content_sha256=digest.hexdigest(),
        cases=cases,
    )
    (out_dir / "split.json").write_text(index.model_dump_json(indent=2) + "\n")
    return index


def read_split_index(split_dir: Path) -> SplitIndex:
    index_file = split_dir / "split.json"
    if not index_file.is_file():
        raise FileNotFoundError(
            f"{index_file} not found: generate the split first (python -m synthetic split --help)"
        )
    return SplitIndex.model_validate_json(index_file.read_text())


def _iter_cases(split_dir: Path, index: SplitIndex) -> Iterator[LoadedCase]:
    for entry in index.cases:
        image, geometry = read_nifti(split_dir / entry.image_file)
        mask, _ = read_nifti(split_dir / entry.mask_file)
        yield LoadedCase(entry.name, entry.modality, image, mask.astype(np.uint8), geometry)


def read_split(
    split_dir: Path, expected_sha256: str | None = None, purpose: str | None = None
) -> list[LoadedCase]:
    """Load every case of a split; with ``expected_sha256`` enforce the lockout.

    The digest is recomputed from the voxels on disk (not trusted from split.json), and
    all cases are checked before any is returned, so an altered test split can never be
    partly used. Every read of the test split, granted or refused, goes to the audit log
    first (with ``purpose``).
    """
    index = read_split_index(split_dir)
    cases = list(_iter_cases(split_dir, index))
    digest = hashlib.sha256()
    for case in cases:
        _digest_update(digest, case.name, case.image, case.mask, case.geometry)
    actual = digest.hexdigest()
    if index.split == "test":
        record_test_set_access(
            split_dir, expected_sha256=expected_sha256, actual_sha256=actual, purpose=purpose
        )
    if index.split == "test" and expected_sha256 is None:
        raise TestSetLockoutError(
            f"{split_dir}: the test split is locked; read it with the SHA-256 recorded in "
            "the model manifest (data.test_split_sha256)"
        )
    if expected_sha256 is not None and actual != expected_sha256:
        raise TestSetLockoutError(
            f"{split_dir}: test split content SHA-256 is {actual}, but the model manifest "
            f"locks {expected_sha256}; the locked test set was altered or regenerated with "
            "a different generator version"
        )
    return cases
