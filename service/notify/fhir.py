"""FHIR R4 result notification: a transaction Bundle of a DiagnosticReport and Observations.

Built with ``fhir.resources.R4B``: fhir.resources 8 ships R5 (its default package), R4B
(FHIR 4.3.0) and STU3, no 4.0.1 package. R4B's DiagnosticReport, Observation and Bundle
have the same elements as R4's (R5 is where DiagnosticReport changed), and this module
uses only elements present in both, so the JSON is R4 (4.0.1) as well.

What is sent, per study (a job of the service):

- one ``Observation`` per processed series and value: vessel volume (SNOMED CT 118565006
  "Volume", UCUM mL), study uncertainty score (UCUM "1") and the review flag (boolean),
  each ``derivedFrom`` the ImagingStudy; the last two have no standard code and use
  :data:`CODE_SYSTEM`, the FHIR twin of the SR's private scheme ``99MINIVESS``;
- one ``DiagnosticReport`` (LOINC 18748-4, category RAD) whose ``result`` are those
  Observations, ``imagingStudy`` the study, ``basedOn`` the order by Accession Number.

The ImagingStudy is referenced logically, by identifier, as FHIR's DICOM guidance has
it (ImagingStudy.identifier): system ``urn:dicom:uid``, value ``urn:oid:<Study Instance
UID>``; the record system need not hold the ImagingStudy resource.

Why one transaction Bundle, not individual POSTs: the report and its Observations land
together or not at all (one HTTP exchange = one attempt of the export's retry schedule;
individual POSTs could leave Observations without their report after a failure), the
report's ``result`` references resolve inside the Bundle (``urn:uuid:`` fullUrls), and
every entry is a conditional update (``PUT Observation?identifier=...``) on an
identifier derived from the study, so a re-send (a retry, ``retry-export``, a study
processed again) replaces the earlier version instead of adding a second report.
"""

from __future__ import annotations

import json
import logging
import ssl
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation

from service.journal import Job
from service.notify import NotificationError
from service.notify.results import SeriesResult, StudyResult, study_result
from service.settings import ServiceSettings

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
DICOM_UID = "urn:dicom:uid"  # FHIR's identifier system for DICOM UIDs (value urn:oid:...)
URI = "urn:ietf:rfc:3986"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
# Codes the standards lack (uncertainty score, review flag): an OID under 2.25 derived
# from a UUID (ITU-T X.667), which needs no registration; same concepts as 99MINIVESS.
CODE_SYSTEM = f"urn:oid:2.25.{uuid.uuid5(uuid.NAMESPACE_URL, 'minivess:codes').int}"
_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "minivess:fhir")

VOLUME = {"system": SNOMED, "code": "118565006", "display": "Volume"}
UNCERTAINTY = {"system": CODE_SYSTEM, "code": "DISAGREE",
               "display": "Ensemble disagreement (study uncertainty score)"}  # fmt: skip
REVIEW = {"system": CODE_SYSTEM, "code": "REVIEW",
          "display": "Human review required (out-of-distribution input)"}  # fmt: skip


def _urn(*parts: str) -> str:
    """A stable ``urn:uuid:`` for ``parts``: the same study gives the same identifiers."""
    return f"urn:uuid:{uuid.uuid5(_IDS, '/'.join(parts))}"


def imaging_study_reference(study_uid: str) -> dict[str, Any]:
    """Reference(ImagingStudy) by its Study Instance UID (logical reference)."""
    return {
        "type": "ImagingStudy",
        "identifier": {"system": DICOM_UID, "value": f"urn:oid:{study_uid}"},
    }


def _subject(result: StudyResult) -> dict[str, Any] | None:
    if not result.patient_id:
        return None
    identifier: dict[str, Any] = {"value": result.patient_id}
    if result.issuer_of_patient_id:
        identifier["assigner"] = {"display": result.issuer_of_patient_id}
    return {"type": "Patient", "identifier": identifier}


def _observations(result: StudyResult, series: SeriesResult) -> list[tuple[str, Observation]]:
    common: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "imaging",
                        "display": "Imaging",
                    }
                ]
            }
        ],
        "effectiveDateTime": result.finished_at.isoformat(),
        "derivedFrom": [imaging_study_reference(result.study_uid)],
        "device": {"display": f"{result.model_name} {result.model_version}"},
        "note": [{"text": f"Series Instance UID {series.series_uid}"}],
    }
    if (subject := _subject(result)) is not None:
        common["subject"] = subject
    values: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("volume", VOLUME, {"valueQuantity": {"value": round(series.vessel_volume_ml, 4),
                                              "unit": "mL", "system": UCUM, "code": "mL"}}),
        ("uncertainty", UNCERTAINTY, {"valueQuantity": {
            "value": round(series.uncertainty_score, 6), "unit": "1", "system": UCUM,
            "code": "1"}}),
        ("review", REVIEW, {"valueBoolean": series.review}),
    ]  # fmt: skip
    made = []
    for kind, coding, value in values:
        urn = _urn(result.study_uid, series.series_uid, kind)
        text = "Vessel volume" if kind == "volume" else coding["display"]
        made.append((urn, Observation.model_validate({
            **common, **value, "identifier": [{"system": URI, "value": urn}],
            "code": {"coding": [coding], "text": text},
        })))  # fmt: skip
    return made


def _conclusion(result: StudyResult) -> str:
    parts = [
        f"series {n}: vessel volume {s.vessel_volume_ml:.2f} mL, uncertainty score "
        f"{s.uncertainty_score:.4f}{' (REVIEW: out of distribution)' if s.review else ''}"
        for n, s in enumerate(result.series, start=1)
    ]
    flag = "Marked for human review. " if result.review else ""
    return f"{flag}Vessel segmentation by {result.model_name} {result.model_version}; " + "; ".join(
        parts
    )


def diagnostic_report_bundle(result: StudyResult) -> Bundle:
    """The transaction Bundle for one study's results (validated as it is built)."""
    observations = [o for series in result.series for o in _observations(result, series)]
    report_urn = _urn(result.study_uid, "report")
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": URI, "value": report_urn}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                        "code": "RAD",
                        "display": "Radiology",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}],
            "text": "Vessel segmentation (MinIVess)",
        },
        "effectiveDateTime": result.finished_at.isoformat(),
        "issued": result.finished_at.isoformat(),
        "imagingStudy": [imaging_study_reference(result.study_uid)],
        "result": [{"reference": urn, "type": "Observation"} for urn, _ in observations],
        "conclusion": _conclusion(result),
    }
    if (subject := _subject(result)) is not None:
        report["subject"] = subject
    if result.accession_number:
        report["basedOn"] = [{"type": "ServiceRequest", "identifier": {
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                 "code": "ACSN"}]},
            "value": result.accession_number,
        }}]  # fmt: skip
    entries: list[tuple[str, str, Observation | DiagnosticReport]] = [
        (urn, "Observation", o) for urn, o in observations
    ]
    entries.append((report_urn, "DiagnosticReport", DiagnosticReport.model_validate(report)))
    return Bundle.model_validate({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{
            "fullUrl": urn,
            "resource": resource,
            "request": {"method": "PUT", "url": f"{kind}?identifier={URI}|{urn}"},
        } for urn, kind, resource in entries],
    })  # fmt: skip


def bundle_json(bundle: Bundle) -> bytes:
    """FHIR JSON (no nulls, no empty elements) of a Bundle."""
    return bundle.model_dump_json(exclude_none=True).encode()


class FhirChannel:
    """Delivery channel of the exporter: POST the Bundle to the FHIR base URL."""

    def __init__(self, settings: ServiceSettings) -> None:
        if settings.fhir_base_url is None:
            raise ValueError("fhir_base_url is not set")
        self.url = settings.fhir_base_url.rstrip("/")
        self.name = f"fhir:{self.url}"
        self.timeout = settings.notification_timeout_s
        token = settings.fhir_auth_token
        self._token = token.get_secret_value() if token is not None else None
        # Built once: a bad CA file stops the service at start, not at the first study.
        self._tls = (
            ssl.create_default_context(cafile=settings.fhir_tls_ca)
            if self.url.startswith("https://")
            else None
        )

    def send(self, job: Job, files: list[Path]) -> None:
        body = bundle_json(diagnostic_report_bundle(study_result(job)))
        headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._tls) as rsp:
                answer = rsp.read()
        except urllib.error.HTTPError as error:
            raise NotificationError(f"HTTP {error.code} {error.reason}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise NotificationError(f"unreachable: {reason}") from None
        _check_response(answer)
        log.info("job %s: DiagnosticReport sent to %s", job.job_id, self.url)


def _check_response(answer: bytes) -> None:
    """A transaction-response Bundle whose entries all answer 2xx (FHIR 3.1.0.11.4)."""
    try:
        data = json.loads(answer or b"{}")
    except ValueError:
        raise NotificationError("answer is not JSON") from None
    if data.get("resourceType") != "Bundle":
        return  # some servers answer 200 with no body; the HTTP status said success
    statuses = [str(e.get("response", {}).get("status", "")) for e in data.get("entry", [])]
    refused = [s for s in statuses if not s.startswith("2")]
    if refused:
        raise NotificationError(f"transaction entries refused: {refused}")
