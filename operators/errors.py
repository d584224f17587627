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
| 30 | ``OutputError``: the outputs could not be written; ``DicomOutputError``: no valid object
  can be made of the values (``operators.values.InvalidValueError`` among them) |
| 70 | an internal error (a bug): reported in one line, details in the log |
| 78 | a settings error (EX_CONFIG): an unknown ``MINIVESS_*`` name, a malformed value or
  config file, bad selection rules (``SelectionRulesError``) |
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base: a specific, user-facing failure of one run.

    A subclass states its exit code and reason (the service's problem type) in its class
    line, ``class XError(PipelineError, exit_code=..., reason=...)``; the table above lists
    them all.
    """

    exit_code = 70
    reason = "internal-error"

    def __init_subclass__(
        cls, *, exit_code: int | None = None, reason: str | None = None, **kwargs: object
    ) -> None:
        super().__init_subclass__(**kwargs)
        if exit_code is not None:
            cls.exit_code = exit_code
        if reason is not None:
            cls.reason = reason

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputNotFoundError(PipelineError, exit_code=15, reason="input-not-found"):
    """The input path does not exist or is unreadable."""


class NoImageSeriesError(PipelineError, exit_code=10, reason="no-image-series"):
    """The input holds no DICOM image series at all."""


class NoQualifyingSeriesError(PipelineError, exit_code=11, reason="no-qualifying-series"):
    """Image series exist, none matches the selection rules."""


class PixelDataError(PipelineError, exit_code=12, reason="bad-pixel-data"):
    """Pixel data truncated, corrupt or in an undecodable syntax."""


class GeometryError(PipelineError, exit_code=13, reason="bad-geometry"):
    """Single slice, missing slices, inconsistent spacing, oblique."""


class VolumeTooLargeError(PipelineError, exit_code=14, reason="volume-too-large"):
    """The volume exceeds the configured memory budget."""


class ModelLoadError(PipelineError, exit_code=20, reason="model-integrity"):
    """A model file is missing, truncated or altered, or the manifest is bad."""


class OutputError(PipelineError, exit_code=30, reason="output-failed"):
    """The outputs could not be written."""


class DicomOutputError(OutputError, ValueError):
    """Inputs the writers cannot turn into valid objects; the message says which and why.

    Raised by the DICOM writers (``operators.dicom_output``) for what only they need, and
    as :class:`~operators.values.InvalidValueError` by the values passed between operators.
    """
