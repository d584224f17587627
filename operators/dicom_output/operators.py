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

from monai.deploy.core import Fragment, Operator, OperatorSpec
from pydicom.dataset import Dataset

from operators.dicom_output.common import OutputSettings
from operators.dicom_output.pm.sop import build_uncertainty_map
from operators.dicom_output.seg.sop import build_vessel_segmentation
from operators.dicom_output.sr.sop import build_measurement_report
from operators.errors import OutputError
from operators.run_report import RunRecorder
from operators.values import SeriesWork


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


def series_output_dir(recorder: RunRecorder, work: SeriesWork) -> Path:
    return recorder.output_dir / work.volume.series_instance_uid


class _WriterOperator(Operator):
    def __init__(
        self,
        fragment: Fragment,
        *args: Any,
        settings: OutputSettings,
        recorder: RunRecorder,
        **kwargs: Any,
    ) -> None:
        self.settings = settings
        self.recorder = recorder
        super().__init__(fragment, *args, **kwargs)

    def _record(self, work: SeriesWork, kind: str, path: Path) -> None:
        self.recorder.outcome(work.volume.series_instance_uid).outputs[kind] = str(path)


class DicomSegWriterOperator(_WriterOperator):
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
            assert item.result is not None
            with self.recorder.stage("write SEG"):
                seg = build_vessel_segmentation(item.volume, item.result, self.settings)
                folder = series_output_dir(self.recorder, item)
                self._record(item, "seg", write_dataset_atomically(seg, folder / "vessel-seg.dcm"))
                if self.fractional:
                    probability = build_vessel_segmentation(
                        item.volume, item.result, self.settings, fractional=True
                    )
                    path = write_dataset_atomically(
                        probability, folder / "vessel-probability-seg.dcm"
                    )
                    self._record(item, "probability_seg", path)
            pairs.append((item, seg))
        op_output.emit(pairs, "segmentations")


class ParametricMapWriterOperator(_WriterOperator):
    """Input ``series_work``; writes the uncertainty maps (a leaf of the graph)."""

    def __init__(self, fragment: Fragment, *args: Any, quantity: str, **kwargs: Any) -> None:
        self.quantity = quantity
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("series_work")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        work: list[SeriesWork] = op_input.receive("series_work")
        for item in work:
            assert item.result is not None
            with self.recorder.stage("write uncertainty map"):
                pmap = build_uncertainty_map(item.volume, item.result, self.quantity, self.settings)
                name = f"uncertainty-{self.quantity.replace('_', '-')}-pm.dcm"
                path = write_dataset_atomically(pmap, series_output_dir(self.recorder, item) / name)
                self._record(item, "uncertainty_map", path)


class StructuredReportWriterOperator(_WriterOperator):
    """Input ``segmentations``; writes the TID 1500 reports (a leaf of the graph)."""

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("segmentations")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        pairs: list[tuple[SeriesWork, Any]] = op_input.receive("segmentations")
        for item, seg in pairs:
            assert item.result is not None
            with self.recorder.stage("write SR"):
                report = build_measurement_report(item.volume, item.result, seg, self.settings)
                path = series_output_dir(self.recorder, item) / "vessel-report-sr.dcm"
                self._record(item, "sr", write_dataset_atomically(report, path))
