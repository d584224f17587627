"""What a notification says about one job: the run report's values and the study's keys.

The values come from ``report.json`` (:class:`operators.run_report.RunReport`, written by
the pipeline beside the results): per processed series its vessel volume, study
uncertainty score, OOD threshold and review flag, as in the DICOM SR. The keys the
record system files by (Patient ID and its issuer, Accession Number) are read from the
header of a result file, which copies them from the source study; they are never logged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pydicom
from pydantic import BaseModel, ValidationError
from pydicom.errors import InvalidDicomError

from map_app.pipeline import REPORT_NAME
from operators.run_report import RunReport
from service.journal import Job
from service.notify import NotificationError


class SeriesResult(BaseModel):
    series_uid: str
    modality: str
    vessel_volume_ml: float
    uncertainty_score: float
    ood_threshold: float | None
    review: bool


class StudyResult(BaseModel):
    job_id: str
    study_uid: str
    patient_id: str
    issuer_of_patient_id: str
    accession_number: str
    model_name: str
    model_version: str
    finished_at: datetime
    series: list[SeriesResult]

    @property
    def review(self) -> bool:
        """Marked for human review when any series is out of distribution."""
        return any(series.review for series in self.series)


def study_result(job: Job) -> StudyResult:
    """The job's results, or NotificationError saying what is missing."""
    if job.output_dir is None:
        raise NotificationError(f"job {job.job_id} has no output folder")
    path = Path(job.output_dir) / REPORT_NAME
    try:
        report = RunReport.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as error:
        raise NotificationError(f"{REPORT_NAME} unreadable: {type(error).__name__}") from None
    series = [
        SeriesResult(
            series_uid=outcome.series_instance_uid,
            modality=outcome.modality,
            vessel_volume_ml=outcome.vessel_volume_ml,
            uncertainty_score=outcome.uncertainty_score,
            ood_threshold=outcome.ood_threshold,
            review=bool(outcome.out_of_distribution),
        )
        for outcome in report.series
        if outcome.status == "done"
        and outcome.vessel_volume_ml is not None
        and outcome.uncertainty_score is not None
    ]
    if not series:
        raise NotificationError(f"{REPORT_NAME} has no processed series with measurements")
    header = _result_header(job)
    return StudyResult(
        job_id=job.job_id,
        study_uid=job.study_uid,
        patient_id=str(header.get("PatientID", "") or ""),
        issuer_of_patient_id=str(header.get("IssuerOfPatientID", "") or ""),
        accession_number=str(header.get("AccessionNumber", "") or ""),
        model_name=report.model.name,
        model_version=report.model.version,
        finished_at=_parse_time(report.finished_at),
        series=series,
    )


def _result_header(job: Job) -> pydicom.Dataset:
    for output in job.outputs:
        try:
            return pydicom.dcmread(output, stop_before_pixels=True)
        except (OSError, InvalidDicomError):
            continue
    raise NotificationError(f"job {job.job_id}: no readable result file")


def _parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return datetime.now(UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
