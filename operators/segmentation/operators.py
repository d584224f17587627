"""Ensemble inference and uncertainty as MONAI Deploy operators.

``EnsembleInferenceOperator`` runs every member (ONNX Runtime sessions created once, when
the application's ensemble was loaded) over each selected volume; ``UncertaintyOperator``
fuses the members and derives the uncertainty maps, the study score and the OOD flag.
Both pass a list of ``SeriesWork`` along, one entry per selected series: every qualifying
series is processed, not only the first.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from monai.deploy.core import Fragment, OperatorSpec

from models.features import study_features
from models.inference import SlidingWindowSettings, ensemble_probabilities
from models.loader import LoadedEnsemble
from models.screen import WindowTally
from operators.run_operator import RunOperator
from operators.run_report import WindowCount
from operators.segmentation.fusion import segmentation_result
from operators.values import SeriesWork


class EnsembleInferenceOperator(RunOperator):
    """Input ``series_work``: list of SeriesWork; output ``series_work`` with member maps."""

    def __init__(
        self,
        fragment: Fragment,
        *args: Any,
        ensemble: LoadedEnsemble,
        settings: SlidingWindowSettings,
        **kwargs: Any,
    ) -> None:
        self.ensemble = ensemble
        self.settings = settings
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("series_work")
        spec.output("series_work")

    def _member_done(self, member: str, seconds: float) -> None:
        # "inference" is the whole ensemble; "inference:<member>" each member's share.
        self.recorder.add_time(f"inference:{member}", seconds)

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        work: list[SeriesWork] = op_input.receive("series_work")
        done = []
        for item in work:
            tallies: dict[str, WindowTally] = {}
            with self.recorder.stage("inference"):
                stack = ensemble_probabilities(
                    self.ensemble,
                    item.volume.voxels,
                    item.volume.geometry.spacing,
                    self.settings,
                    on_member_done=self._member_done,
                    modality=item.volume.modality,
                    tallies=tallies,
                )
            self.recorder.outcome(item.volume.series_instance_uid).windows = {
                name: WindowCount(run=tally.run, skipped=tally.skipped)
                for name, tally in tallies.items()
            }
            done.append(replace(item, member_probabilities=stack))
        op_output.emit(done, "series_work")


class UncertaintyOperator(RunOperator):
    """Input/output ``series_work``: adds the fused SegmentationResult, drops member maps."""

    def __init__(
        self,
        fragment: Fragment,
        *args: Any,
        ensemble: LoadedEnsemble,
        fusion: str | None,
        **kwargs: Any,
    ) -> None:
        self.ensemble = ensemble
        self.fusion = fusion
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("series_work")
        spec.output("series_work")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        work: list[SeriesWork] = op_input.receive("series_work")
        done = []
        for item in work:
            assert item.member_probabilities is not None
            with self.recorder.stage("uncertainty"):
                result = segmentation_result(
                    self.ensemble,
                    item.member_probabilities,
                    self.fusion,
                    item.volume.geometry.spacing,
                    item.volume.voxels,
                    item.volume.modality,
                )
            outcome = self.recorder.outcome(item.volume.series_instance_uid)
            outcome.uncertainty_score = round(result.uncertainty_score, 6)
            outcome.ood_threshold = result.ood_threshold
            outcome.out_of_distribution = result.out_of_distribution
            outcome.vessel_volume_ml = round(result.vessel_volume_ml(item.volume.geometry), 4)
            outcome.faint_components_dropped = result.faint_components_dropped
            outcome.lumen_voxels_grown = result.lumen_voxels_grown
            outcome.features = study_features(
                item.volume.voxels,
                item.volume.geometry.spacing,
                result.mean_probability,
                result.uncertainty_score,
                self.ensemble.manifest.probability_threshold,
            )
            done.append(SeriesWork(item.volume, None, result))
        op_output.emit(done, "series_work")
