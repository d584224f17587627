"""The MONAI Deploy application: the operator graph for one run.

DICOM input::

    DicomLoader -> SeriesSelector -> SeriesToVolume -> EnsembleInference -> Uncertainty
        -> DicomSegWriter -> StructuredReportWriter
        -> ParametricMapWriter

NIfTI input (research)::

    NiftiLoader -> EnsembleInference -> Uncertainty -> NiftiWriter

The loaded ensemble (sessions created once) and the configuration come from the caller
(``map_app.pipeline.Pipeline``); everything that belongs to one run lives in the run's
``RunRecorder``. So one process can run many studies without reloading models and without
state leaking from one run into the next.
"""

from __future__ import annotations

from typing import Any

from holoscan.conditions import CountCondition
from monai.deploy.core import Application

from map_app.config import AppConfig
from models.loader import LoadedEnsemble
from operators.dicom_input.operators import (
    DicomLoaderOperator,
    SeriesSelectorOperator,
    SeriesToVolumeOperator,
)
from operators.dicom_input.selection import SelectionRules
from operators.dicom_output.common import OutputSettings
from operators.dicom_output.operators import (
    DicomSegWriterOperator,
    ParametricMapWriterOperator,
    StructuredReportWriterOperator,
)
from operators.nifti.operators import NiftiLoaderOperator, NiftiWriterOperator
from operators.run_report import RunRecorder
from operators.segmentation.operators import EnsembleInferenceOperator, UncertaintyOperator

APP_NAME = "minivess-vessel-segmentation"


class VesselSegmentationApp(Application):
    """One run of the pipeline over ``recorder.input_path``."""

    def __init__(
        self,
        *args: Any,
        ensemble: LoadedEnsemble,
        config: AppConfig,
        rules: SelectionRules | None,
        recorder: RunRecorder,
        input_kind: str,
        **kwargs: Any,
    ) -> None:
        self.ensemble = ensemble
        self.rules = rules
        self.config = config
        self.recorder = recorder
        self.input_kind = input_kind
        super().__init__(*args, **kwargs)

    def compose(self) -> None:
        recorder = self.recorder
        budget = self.config.memory_budget_mb * 2**20
        once = CountCondition(self, 1)
        if self.input_kind == "nifti":
            source: Any = NiftiLoaderOperator(
                self, once, memory_budget_bytes=budget, recorder=recorder, name="nifti_loader"
            )
        else:
            loader = DicomLoaderOperator(self, once, recorder=recorder, name="dicom_loader")
            selector = SeriesSelectorOperator(
                self, rules=self.rules, recorder=recorder, name="series_selector"
            )
            source = SeriesToVolumeOperator(
                self, memory_budget_bytes=budget, recorder=recorder, name="series_to_volume"
            )
            self.add_flow(loader, selector, {("dicom_scan", "dicom_scan")})
            self.add_flow(selector, source, {("selected_series", "selected_series")})
        inference = EnsembleInferenceOperator(
            self,
            ensemble=self.ensemble,
            settings=self.config.sliding_window(),
            recorder=recorder,
            name="ensemble_inference",
        )
        uncertainty = UncertaintyOperator(
            self,
            ensemble=self.ensemble,
            fusion=self.config.fusion,
            recorder=recorder,
            name="uncertainty",
        )
        self.add_flow(source, inference, {("series_work", "series_work")})
        self.add_flow(inference, uncertainty, {("series_work", "series_work")})
        if self.input_kind == "nifti":
            writer = NiftiWriterOperator(self, recorder=recorder, name="nifti_writer")
            self.add_flow(uncertainty, writer, {("series_work", "series_work")})
            return
        settings = OutputSettings()
        seg_writer = DicomSegWriterOperator(
            self,
            settings=settings,
            recorder=recorder,
            fractional=self.config.fractional_seg,
            name="dicom_seg_writer",
        )
        pm_writer = ParametricMapWriterOperator(
            self,
            settings=settings,
            recorder=recorder,
            quantity=self.config.uncertainty_map,
            name="parametric_map_writer",
        )
        sr_writer = StructuredReportWriterOperator(
            self, settings=settings, recorder=recorder, name="structured_report_writer"
        )
        self.add_flow(uncertainty, seg_writer, {("series_work", "series_work")})
        self.add_flow(uncertainty, pm_writer, {("series_work", "series_work")})
        self.add_flow(seg_writer, sr_writer, {("segmentations", "segmentations")})
