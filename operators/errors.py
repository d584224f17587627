"""Errors the pipeline reports to its callers, each with a documented exit code.

The CLI maps them to exit codes, the service to DICOM statuses and problem+json; none of
them is ever shown as a traceback. Messages name the offending file or series but never
carry patient identifiers.

| exit | error |
| ---: | --- |
| 0 | success (also when some files were skipped; see report.json) |
| 2 | bad command line |
| 10 | ``NoImageSeriesError``: the input holds no DICOM image series at all |
| 11 | ``NoQualifyingSeriesError``: image series exist, none matches the selection rules |
| 12 | ``PixelDataError``: pixel data truncated, corrupt or in an undecodable syntax |
| 13 | ``GeometryError``: single slice, missing slices, inconsistent spacing, oblique |
| 14 | ``VolumeTooLargeError``: the volume exceeds the configured memory budget |
| 15 | ``InputNotFoundError``: the input path does not exist or is unreadable |
| 20 | ``ModelLoadError``: a model file is missing, truncated or altered, or the manifest is bad |
| 30 | ``OutputError``: the outputs could not be written |
| 70 | an internal error (a bug): reported in one line, details in the log |
| 78 | a settings error (EX_CONFIG): an unknown ``MINIVESS_*`` name, a malformed value or
  config file, bad selection rules (``SelectionRulesError``) |
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base: a specific, user-facing failure of one run."""

    exit_code = 70
    reason = "internal-error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputNotFoundError(PipelineError):
    exit_code = 15
    reason = "input-not-found"


class NoImageSeriesError(PipelineError):
    exit_code = 10
    reason = "no-image-series"


class NoQualifyingSeriesError(PipelineError):
    exit_code = 11
    reason = "no-qualifying-series"


class PixelDataError(PipelineError):
    exit_code = 12
    reason = "bad-pixel-data"


class GeometryError(PipelineError):
    exit_code = 13
    reason = "bad-geometry"


class VolumeTooLargeError(PipelineError):
    exit_code = 14
    reason = "volume-too-large"


class ModelLoadError(PipelineError):
    exit_code = 20
    reason = "model-integrity"


class OutputError(PipelineError):
    exit_code = 30
    reason = "output-failed"
