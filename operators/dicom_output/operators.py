"""DICOM out, as MONAI Deploy operators: SEG, uncertainty Parametric Map, TID 1500 SR.

Each operator writes one kind of object per processed series into
``OUTPUT/<SeriesInstanceUID>/`` (atomically: a reader never sees half a file) and records
the path in the run report. The SR references the SEG, so the SEG writer hands its
objects on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from monai.deploy.core import Fragment, OperatorSpec
from pydicom.dataset import Dataset

from operators.dicom_output.common import OutputSettings
from operators.dicom_output.pm.sop import build_uncertainty_map
from operators.dicom_output.seg.sop import build_vessel_segmentation
from operators.dicom_output.sr.sop import build_measurement_report
from operators.errors import OutputError
from operators.run_operator import RunOperator, SeriesWriterOperator
from operators.values import SegmentationResult, SeriesVolume, SeriesWork


def write_dataset_atomically(dataset: Dataset, path: Path) -> Path:
    """Write a DICOM file via a temporary name, fsync, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        dataset.save_as(partial, enforce_file_format=True)
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        partial.replace(path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from error
    return path


class _DicomWriter(RunOperator):
    """Writes derived objects into ``OUTPUT/<SeriesInstanceUID>/`` and names them in the report."""

    def __init__(
        self, fragment: Fragment, *args: Any, settings: OutputSettings, **kwargs: Any
    ) -> None:
        self.settings = settings
        super().__init__(fragment, *args, **kwargs)

    def save(self, volume: SeriesVolume, kind: str, dataset: Dataset, name: str) -> None:
        folder = self.recorder.output_dir / volume.series_instance_uid
        self.record_output(volume, kind, write_dataset_atomically(dataset, folder / name))


class DicomSegWriterOperator(_DicomWriter):
    """Input ``series_work``; output ``segmentations``: (work, SEG) pairs for the SR."""

    def __init__(
        self, fragment: Fragment, *args: Any, fractional: bool = False, **kwargs: Any
    ) -> None:
        self.fractional = fractional
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("series_work")
        spec.output("segmentations")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        work: list[SeriesWork] = op_input.receive("series_work")
        pairs = []
        for item in work:
            volume, result = item.volume, item.finished()
            with self.recorder.stage("write SEG"):
                seg = build_vessel_segmentation(volume, result, self.settings)
                self.save(volume, "seg", seg, "vessel-seg.dcm")
                if self.fractional:
                    probability = build_vessel_segmentation(
                        volume, result, self.settings, fractional=True
                    )
                    self.save(volume, "probability_seg", probability, "vessel-probability-seg.dcm")
            pairs.append((item, seg))
        op_output.emit(pairs, "segmentations")


class ParametricMapWriterOperator(_DicomWriter, SeriesWriterOperator):
    """Input ``series_work``; writes the uncertainty maps (a leaf of the graph)."""

    stage = "write uncertainty map"

    def __init__(self, fragment: Fragment, *args: Any, quantity: str, **kwargs: Any) -> None:
        self.quantity = quantity
        super().__init__(fragment, *args, **kwargs)

    def write(self, volume: SeriesVolume, result: SegmentationResult) -> None:
        pmap = build_uncertainty_map(volume, result, self.quantity, self.settings)
        name = f"uncertainty-{self.quantity.replace('_', '-')}-pm.dcm"
        self.save(volume, "uncertainty_map", pmap, name)


class StructuredReportWriterOperator(_DicomWriter):
    """Input ``segmentations``; writes the TID 1500 reports (a leaf of the graph)."""

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("segmentations")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        pairs: list[tuple[SeriesWork, Any]] = op_input.receive("segmentations")
        for item, seg in pairs:
            volume, result = item.volume, item.finished()
            with self.recorder.stage("write SR"):
                report = build_measurement_report(volume, result, seg, self.settings)
                self.save(volume, "sr", report, "vessel-report-sr.dcm")
