"""What every operator of the pipeline shares: it belongs to one run and records into it.

``RunOperator`` keeps the run's :class:`~operators.run_report.RunRecorder` (timings,
per-series outcomes, output paths). ``VolumeSourceOperator`` is the start of the volume
half of the graph (DICOM series or NIfTI file to volumes, within the memory budget);
``SeriesWriterOperator`` a leaf writer: input ``series_work``, one ``write`` per finished
series, timed as one stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monai.deploy.core import Fragment, Operator, OperatorSpec

from operators.run_report import RunRecorder
from operators.values import SegmentationResult, SeriesVolume, SeriesWork


class RunOperator(Operator):
    """An operator of one run; ``recorder`` is that run's (never shared between runs)."""

    def __init__(
        self, fragment: Fragment, *args: Any, recorder: RunRecorder, **kwargs: Any
    ) -> None:
        self.recorder = recorder
        super().__init__(fragment, *args, **kwargs)

    def record_output(self, volume: SeriesVolume, kind: str, path: Path) -> None:
        """Name ``path`` as the series' output of ``kind`` in report.json."""
        self.recorder.outcome(volume.series_instance_uid).outputs[kind] = str(path)


class VolumeSourceOperator(RunOperator):
    """Makes the run's volumes within a memory budget; output ``series_work``."""

    def __init__(
        self, fragment: Fragment, *args: Any, memory_budget_bytes: int, **kwargs: Any
    ) -> None:
        self.memory_budget_bytes = memory_budget_bytes
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.output("series_work")


class SeriesWriterOperator(RunOperator):
    """Input ``series_work``; writes each finished series' outputs (a leaf of the graph)."""

    stage = "write"

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("series_work")

    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        work: list[SeriesWork] = op_input.receive("series_work")
        for item in work:
            with self.recorder.stage(self.stage):
                self.write(item.volume, item.finished())

    def write(self, volume: SeriesVolume, result: SegmentationResult) -> None:
        raise NotImplementedError
