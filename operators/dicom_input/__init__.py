"""DICOM input of the pipeline: scan a folder, select series, build volumes.

Plain functions and classes, free of Holoscan, so that they can be tested on their own;
:mod:`.operators` wraps them as MONAI Deploy operators (not imported here):

* :func:`scan_dicom_folder` reads headers only and groups instances into studies and
  series, listing every file it could not use (:mod:`.loader`);
* :func:`select_series` applies selection rules in the MONAI Deploy App SDK's JSON format
  and returns every qualifying series (:mod:`.selection`);
* :func:`series_to_volume` checks the geometry and decodes one series into a
  :class:`~operators.values.SeriesVolume` (:mod:`.volume`).
"""

from __future__ import annotations

from operators.dicom_input.loader import (
    DicomInstance,
    DicomScan,
    DicomSeries,
    DicomStudy,
    scan_dicom_folder,
)
from operators.dicom_input.selection import (
    DEFAULT_RULES,
    SelectedSeries,
    SelectionRule,
    SelectionRules,
    SelectionRulesError,
    select_series,
)
from operators.dicom_input.volume import series_to_volume

__all__ = [
    "DEFAULT_RULES",
    "DicomInstance",
    "DicomScan",
    "DicomSeries",
    "DicomStudy",
    "SelectedSeries",
    "SelectionRule",
    "SelectionRules",
    "SelectionRulesError",
    "scan_dicom_folder",
    "select_series",
    "series_to_volume",
]
