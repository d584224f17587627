"""What a site dataset reader hands to validation, and the typed problems it can find.

Readers (``nnunet``, ``dicom_seg``) turn a folder into :class:`RawCase` objects: the image
and its annotation each on its own grid, exactly as stored, so that validation can
compare the two. A case that cannot even be read becomes a :class:`CaseProblem` instead
of an exception: a site wants every broken case of its dataset named in one report, not
one per run.

Case names never carry patient identifiers: nnU-Net names are the site's own file
identifiers; DICOM cases are named by a hash of their Series Instance UID.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from operators.geometry import VoxelGeometry
from synthetic.case import Modality

# What a reader may load of one volume: far above any angiogram; the appliance's own budget
# is a site setting, not known here.
READ_BUDGET_BYTES = 8 * 2**30

SiteSplit = Literal["train", "test"]

ProblemKind = Literal[
    "unreadable",  # a file the reader cannot decode
    "missing-label",  # an image without its annotation (or a SEG without its images)
    "modality",  # not CT or MR, or a modality the dataset does not declare
    "geometry-mismatch",  # image and label grids differ
    "label-values",  # label values (segments) outside the declared ones
    "refused-geometry",  # spacing or orientation the appliance's pipeline refuses
    "duplicate",  # two cases of one split with the same image content
    "test-in-training",  # a test case that also sits in training
]


class CaseProblem(BaseModel):
    """One thing wrong with one case, in words a site can act on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    case: str
    split: SiteSplit
    kind: ProblemKind
    message: str


class DatasetLayoutError(ValueError):
    """The folder is not a dataset of the named format (missing dataset.json, imagesTr...)."""


class DataVersionError(ValueError):
    """The dataset's content hash is not the one the recipe pins (reproducing a build)."""


class DatasetValidationError(ValueError):
    """One or more cases are unfit for training or testing; ``problems`` lists them all."""

    def __init__(self, dataset: str, problems: list[CaseProblem]) -> None:
        self.dataset = dataset
        self.problems = tuple(problems)
        lines = [f"  {p.split}/{p.case}: [{p.kind}] {p.message}" for p in problems]
        super().__init__(
            f"site dataset {dataset}: {len(problems)} problem(s), nothing was trained:\n"
            + "\n".join(lines)
        )

    def kinds(self) -> set[str]:
        return {p.kind for p in self.problems}


@dataclass(frozen=True)
class RawCase:
    """A case as stored: image and label each with its own grid (checked by validation)."""

    name: str
    split: SiteSplit
    modality: Modality
    image: np.ndarray  # float32 [k, j, i]
    image_geometry: VoxelGeometry
    label: np.ndarray  # integer label values [k, j, i] (segment numbers for a DICOM SEG)
    label_geometry: VoxelGeometry
    source: str  # where it came from, relative to the dataset root, for messages


ReadResult = RawCase | CaseProblem


def parse_modality(text: str) -> Modality | None:
    """CT or MR from a declared channel name or a DICOM Modality; None for anything else."""
    value = text.strip().upper()
    if value in ("CT", "CTA"):
        return Modality.CT
    if value in ("MR", "MRI", "MRA", "TOF"):
        return Modality.MR
    return None
