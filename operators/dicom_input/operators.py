"""DICOM in, as MONAI Deploy operators: load -> select -> series to volume.

The SDK's ``DICOMDataLoaderOperator``, ``DICOMSeriesSelectorOperator`` and
``DICOMSeriesToVolumeOperator`` are the reference for the roles and the rule format; ours
keep corrupt files from stopping a run, process every qualifying series and check the
geometry (see ``operators.dicom_input``).
"""

from __future__ import annotations

from typing import Any

from monai.deploy.core import Fragment, OperatorSpec

from operators.dicom_input.loader import scan_dicom_folder
from operators.dicom_input.selection import SelectedSeries, SelectionRules, select_series
from operators.dicom_input.volume import series_to_volume
from operators.errors import PipelineError
from operators.run_operator import RunOperator, VolumeSourceOperator
from operators.run_report import SeriesOutcome
from operators.values import SeriesWork


class DicomLoaderOperator(RunOperator):
    """Scans the run's input folder. Output ``dicom_scan``."""

    def setup(self, spec: OperatorSpec) -> None:
        spec.output("dicom_scan")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        with self.recorder.stage("load"):
            scan = scan_dicom_folder(self.recorder.input_path)
        self.recorder.skipped.extend(scan.skipped)
        op_output.emit(scan, "dicom_scan")


class SeriesSelectorOperator(RunOperator):
    """Input ``dicom_scan``; output ``selected_series``: every series matching the rules."""

    def __init__(
        self, fragment: Fragment, *args: Any, rules: SelectionRules | None, **kwargs: Any
    ) -> None:
        self.rules = rules
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("dicom_scan")
        spec.output("selected_series")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        scan = op_input.receive("dicom_scan")
        with self.recorder.stage("select"):
            selected = select_series(scan, self.rules)
        op_output.emit(selected, "selected_series")


class SeriesToVolumeOperator(VolumeSourceOperator):
    """Input ``selected_series``; output ``series_work`` (one volume per good series).

    A series that cannot be turned into a volume (bad geometry, pixel data) is recorded as
    failed and the others go on; only when none is left does the run fail, with the first
    series' error.
    """

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("selected_series")
        super().setup(spec)

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        selected: list[SelectedSeries] = op_input.receive("selected_series")
        work: list[SeriesWork] = []
        errors: list[PipelineError] = []
        for series in selected:
            outcome = SeriesOutcome(
                study_instance_uid=series.study_uid,
                series_instance_uid=series.series_uid,
                selection_name=series.name,
                modality=series.modality,
                status="done",
            )
            self.recorder.series.append(outcome)
            try:
                with self.recorder.stage("volume"):
                    volume = series_to_volume(series, self.memory_budget_bytes)
            except PipelineError as error:
                outcome.status, outcome.error, outcome.error_reason = (
                    "failed",
                    error.message,
                    error.reason,
                )
                errors.append(error)
                continue
            outcome.shape = volume.geometry.shape
            outcome.spacing_mm = volume.geometry.spacing
            work.append(SeriesWork(volume))
        if not work and errors:
            raise errors[0]
        op_output.emit(work, "series_work")
