"""A site's own annotated studies for the builder: read, validate, hash, lock the test set.

Formats: the nnU-Net raw layout (``nnunet``) and DICOM studies with DICOM SEG labels
(``dicom_seg``). :func:`load_site_dataset` reads and validates the whole dataset
(``validation``) and returns the training cases as ``synthetic.splits.LoadedCase`` with the
content hashes of both parts; the test cases are checked (and their read audited) but not
kept. :func:`read_site_test` reads them again for the final evaluation, under the same
lockout as the synthetic test split (``lockout``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from models.builder.datasets.cases import (
    CaseProblem,
    DatasetLayoutError,
    DatasetValidationError,
    DataVersionError,
    ReadResult,
)
from models.builder.datasets.dicom_seg import is_dicom_seg, read_dicom_seg
from models.builder.datasets.lockout import check_site_test_lock
from models.builder.datasets.nnunet import is_nnunet, read_nnunet
from models.builder.datasets.validation import content_sha256, validate_cases
from synthetic.splits import LoadedCase

SiteFormat = Literal["auto", "nnunet", "dicom-seg"]

__all__ = [
    "CaseProblem",
    "DataVersionError",
    "DatasetLayoutError",
    "DatasetValidationError",
    "SiteDataset",
    "SiteFormat",
    "load_site_dataset",
    "read_site_test",
]


@dataclass(frozen=True)
class SiteDataset:
    root: Path
    format: str
    labels: dict[int, str]
    train: list[LoadedCase]
    train_sha256: str
    test_sha256: str | None  # None: the dataset has no test cases
    test_cases: int


def _read(root: Path, fmt: SiteFormat) -> tuple[str, list[ReadResult], dict[int, str]]:
    found: str = fmt
    if not root.is_dir():
        raise DatasetLayoutError(f"site dataset {root} is not a folder")
    if fmt == "auto":
        if is_nnunet(root):
            found = "nnunet"
        elif is_dicom_seg(root):
            found = "dicom-seg"
        else:
            raise DatasetLayoutError(
                f"{root}: neither an nnU-Net raw dataset (dataset.json + imagesTr/) nor a "
                "DICOM dataset (train/ with image series and their SEGs)"
            )
    results, labels = read_nnunet(root) if found == "nnunet" else read_dicom_seg(root)
    return found, results, labels


def _validated(
    root: Path, fmt: SiteFormat, max_spacing_mm: float, vessel_labels: Sequence[str] | None
) -> tuple[str, dict[int, str], list[LoadedCase], list[LoadedCase]]:
    found, results, labels = _read(root, fmt)
    problems, train, test = validate_cases(
        str(root), results, labels, max_spacing_mm, vessel_labels
    )
    if problems:
        raise DatasetValidationError(str(root), problems)
    return found, labels, train, test


def load_site_dataset(
    root: Path,
    fmt: SiteFormat = "auto",
    *,
    max_spacing_mm: float,
    lock_file: Path,
    expected_train_sha256: str | None = None,
    vessel_labels: Sequence[str] | None = None,
) -> SiteDataset:
    """Validate the whole dataset; training cases in memory, the test set locked.

    The first build records the test set's content hash in ``lock_file``; every later
    read must match it (``synthetic.splits.TestSetLockoutError`` otherwise). This read
    of the test cases (to find duplicates and leaks into training) is audited too.
    """
    found, labels, train, test = _validated(root, fmt, max_spacing_mm, vessel_labels)
    if not train:
        raise DatasetLayoutError(f"{root}: no training case")
    train_sha256 = content_sha256(train)
    if expected_train_sha256 is not None and train_sha256 != expected_train_sha256:
        raise DataVersionError(
            f"{root}: training content SHA-256 is {train_sha256}, the recipe pins "
            f"{expected_train_sha256}: the data changed since the build to reproduce"
        )
    test_sha256 = None
    if test:
        test_sha256 = check_site_test_lock(
            root,
            content_sha256(test),
            len(test),
            lock_file,
            purpose="builder: site test set checked for duplicates and leaks into training "
            "before training (cases not used)",
        )
    return SiteDataset(root, found, labels, train, train_sha256, test_sha256, len(test))


def read_site_test(
    root: Path,
    fmt: SiteFormat,
    *,
    max_spacing_mm: float,
    lock_file: Path,
    purpose: str,
    vessel_labels: Sequence[str] | None = None,
) -> list[LoadedCase]:
    """The site's test cases, read again from disk and released only if the lock matches."""
    _, _, _, test = _validated(root, fmt, max_spacing_mm, vessel_labels)
    check_site_test_lock(root, content_sha256(test), len(test), lock_file, purpose=purpose)
    return test
