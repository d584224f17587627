"""Choose the series to segment: every image series that a selection rule accepts.

Rules and their matching live in :mod:`operators.dicom_input.rules` (the MONAI Deploy App
SDK's JSON format). Unlike the SDK's selector, which passes on the first match only,
:func:`select_series` returns every qualifying series of every study, each once, under
the first rule it matches, ordered by study, rule and series number: one push may carry
several angiography series, and each deserves an answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from operators.dicom_input.loader import DicomScan, DicomSeries
from operators.dicom_input.rules import (
    SelectionRule,
    SelectionRules,
    SelectionRulesError,
    orientation_label,
)
from operators.errors import NoImageSeriesError, NoQualifyingSeriesError

__all__ = [
    "DEFAULT_RULES",
    "SelectedSeries",
    "SelectionRule",
    "SelectionRules",
    "SelectionRulesError",
    "describe_series",
    "select_series",
]

_VOLUME_EXCLUSIONS = ["!LOCALIZER", "!SCOUT", "!DERIVED", "!SECONDARY"]
DEFAULT_RULES = SelectionRules.from_json(
    json.dumps(
        {
            "selections": [
                {
                    "name": f"{modality} volume",
                    "conditions": {
                        "Modality": f"^{modality}$",
                        "ImageOrientationPatient": "Axial",
                        "ImageType": _VOLUME_EXCLUSIONS,
                    },
                }
                for modality in ("CT", "MR")
            ]
        }
    )
)
"""Axial CT and MR image volumes; no localizers, scouts, derived or secondary images."""


@dataclass(frozen=True)
class SelectedSeries:
    """A series chosen by the rule ``name``; ``series`` gives its files to the volume builder."""

    name: str
    study_uid: str
    series_uid: str
    modality: str
    series_number: int | None
    instance_count: int
    series: DicomSeries = field(repr=False, compare=False)


def describe_series(series: DicomSeries) -> str:
    """A one-line, PHI-free summary of a series for error messages and reports."""
    image_types = " | ".join("\\".join(v) for v in series.image_types if v) or "none"
    labels = sorted({orientation_label(iop) for iop in series.orientations})
    orientation = "/".join(labels) if labels else "unknown"
    if len(labels) > 1:
        orientation = f"mixed ({orientation})"
    kind = "" if series.is_image else f", non-image: {series.non_image_reason}"
    return (
        f"series {series.series_number if series.series_number is not None else '?'} "
        f"({series.series_instance_uid}): modality {series.modality or '?'}, "
        f"image type {image_types}, orientation {orientation}, "
        f"{len(series.instances)} instance(s){kind}"
    )


def select_series(scan: DicomScan, rules: SelectionRules | None = None) -> list[SelectedSeries]:
    """Every image series of every study that matches a rule (``DEFAULT_RULES`` if None).

    Raises :class:`NoImageSeriesError` when the scan holds no image series at all and
    :class:`NoQualifyingSeriesError` when none of its image series matches.
    """
    rules = rules or DEFAULT_RULES
    if not scan.image_series:
        raise NoImageSeriesError(_no_image_message(scan))
    selected: list[SelectedSeries] = []
    taken: set[tuple[str, str]] = set()
    for study in scan.studies:
        for rule in rules.selections:
            for series in study.series:
                key = (study.study_instance_uid, series.series_instance_uid)
                if key in taken or not rule.matches(series):
                    continue
                taken.add(key)
                selected.append(
                    SelectedSeries(
                        name=rule.name,
                        study_uid=study.study_instance_uid,
                        series_uid=series.series_instance_uid,
                        modality=series.modality,
                        series_number=series.series_number,
                        instance_count=len(series.instances),
                        series=series,
                    )
                )
    if not selected:
        names = ", ".join(repr(rule.name) for rule in rules.selections)
        seen = "; ".join(describe_series(s) for s in scan.all_series)
        raise NoQualifyingSeriesError(
            f"none of the {len(scan.image_series)} image series matches the selection rules "
            f"({names}); seen: {seen}"
        )
    return selected


def _no_image_message(scan: DicomScan) -> str:
    if scan.files_scanned == 0:
        return f"no files found in the input {scan.root}"
    parts = [f"no DICOM image series among {scan.files_scanned} file(s) in the input"]
    if scan.skipped:
        reasons = sorted({s.reason.split(":")[0] for s in scan.skipped})
        parts.append(f"{len(scan.skipped)} skipped ({'; '.join(reasons[:5])})")
    if scan.all_series:
        parts.append("non-image series: " + "; ".join(describe_series(s) for s in scan.all_series))
    return ", ".join(parts)
