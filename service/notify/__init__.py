"""Result notifications to the hospital's record system: FHIR R4 and HL7 v2 (RIS).

A processed study's results (vessel volume, study uncertainty score, review flag, read
from the run's ``report.json`` by :mod:`.results`) are announced to the record system:

- :mod:`.fhir`: a FHIR transaction Bundle (DiagnosticReport + Observations, the
  ImagingStudy named by its Study Instance UID) POSTed to ``fhir_base_url``;
- :mod:`.hl7`: an HL7 v2.5 ORU^R01 over MLLP to ``hl7_host:hl7_port``.

Each is a delivery channel of :class:`service.export.Exporter`, beside the DICOM
destinations: same journal row, same attempt counter, backoff, dead-letter and
``retry-export``; no retry loop of its own. A notification goes out only once every
DICOM destination has the results (the record system then points at objects the PACS
has). Both messages are idempotent, so a re-send after ``retry-export`` replaces, never
duplicates. They carry the patient identifier the record system files by (never logged).
"""

from __future__ import annotations


class NotificationError(Exception):
    """The record system did not take the notification (this attempt)."""
