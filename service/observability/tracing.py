"""OpenTelemetry traces: one trace per study, one span per stage, trace id = correlation id.

The service names every study run by a correlation id (``uuid4().hex``: 32 lowercase hex
digits, the width of a W3C trace id). That id is written into ``report.json`` and the
audit log, and it *is* the trace id here, so an operator can go from a report or an audit
entry straight to the trace. ``CorrelationIdGenerator`` makes the root span of a study
take the correlation id as its trace id (a true root span: no invented remote parent).

Exporters: JSON lines in a folder by default (one ``spans-YYYYMMDD.jsonl`` per UTC day,
one span per line, as OTLP-shaped JSON from ``ReadableSpan.to_json``), OTLP/HTTP when an
endpoint is configured (argument or the standard ``OTEL_EXPORTER_OTLP_*`` variables),
optionally the console.

Span attributes never carry patient data: the correlation id, series instance UIDs,
modality, model name/version, status, error *reasons* (fixed codes), uncertainty scores
and OOD flags. No patient name/ID, no study description, no input paths, no free-text
error messages (which may quote file names).
"""

from __future__ import annotations

import contextvars
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Span, Status, StatusCode

from operators.run_report import RunReport

_CORRELATION_ID = re.compile(r"^[0-9a-f]{32}$")
_PENDING_TRACE_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "minivess_pending_trace_id", default=None
)
# Pipeline order of the stages in ``RunReport.timings_s``; others follow in report order.
STAGE_ORDER = (
    "receive",
    "load",
    "select",
    "volume",
    "inference",
    "uncertainty",
    "write SEG",
    "write uncertainty map",
    "write SR",
    "write NIfTI",
    "export",
)
MEMBER_PREFIX = "inference:"


def trace_id_from_correlation_id(correlation_id: str) -> int:
    """The 128-bit trace id that a correlation id (32 lowercase hex digits) spells."""
    if not _CORRELATION_ID.match(correlation_id) or int(correlation_id, 16) == 0:
        raise ValueError(
            f"correlation id must be 32 lowercase hex digits, not all zero: {correlation_id!r}"
        )
    return int(correlation_id, 16)


def correlation_id_of(span: Span | ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    return trace.format_trace_id(context.trace_id)


class CorrelationIdGenerator(RandomIdGenerator):
    """Random ids, except the trace id of a study's root span: the correlation id."""

    def generate_trace_id(self) -> int:
        pending = _PENDING_TRACE_ID.get()
        return pending if pending is not None else super().generate_trace_id()


class JsonLinesSpanExporter(SpanExporter):
    """Appends finished spans, one compact JSON object a line, to a file per UTC day."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def path_for(self, day: datetime) -> Path:
        return self.directory / f"spans-{day:%Y%m%d}.jsonl"

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(span.to_json(indent=None) + "\n" for span in spans)
        try:
            with self._lock, self.path_for(datetime.now(UTC)).open("a") as out:
                out.write(lines)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def configure_tracing(
    service_name: str = "minivess-appliance",
    service_version: str = "",
    spans_dir: Path | None = None,
    otlp_endpoint: str | None = None,
    otlp_headers: dict[str, str] | None = None,
    console: bool = False,
    set_global: bool = False,
) -> TracerProvider:
    """A provider with the correlation-id generator and the configured exporters.

    ``otlp_endpoint`` is the full traces URL (``http://collector:4318/v1/traces``); when it
    is None but ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is
    set, the OTLP exporter is enabled and reads them itself. The JSON-lines file exporter
    is on whenever ``spans_dir`` is given; with no exporter at all, spans are dropped.
    """
    attributes = {"service.name": service_name}
    if service_version:
        attributes["service.version"] = service_version
    provider = TracerProvider(
        resource=Resource.create(attributes), id_generator=CorrelationIdGenerator()
    )
    if spans_dir is not None:
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(spans_dir)))
    env_endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if otlp_endpoint or env_endpoint:
        # Imported here: only sites that configure a collector pay for the protobuf stack.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp_endpoint, headers=otlp_headers)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if console:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    if set_global:
        trace.set_tracer_provider(provider)
    return provider


def _ns(iso: str) -> int:
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _ordered_stages(timings: dict[str, float]) -> list[str]:
    stages = [name for name in timings if not name.startswith(MEMBER_PREFIX)]
    rank = {name: index for index, name in enumerate(STAGE_ORDER)}
    return sorted(stages, key=lambda name: (rank.get(name, len(rank)), stages.index(name)))


def report_attributes(report: RunReport) -> dict[str, str | bool | int | float | list[str]]:
    """PHI-free attributes of a whole run (the root span)."""
    done = [s for s in report.series if s.status == "done"]
    attributes: dict[str, str | bool | int | float | list[str]] = {
        "minivess.correlation_id": report.correlation_id,
        "minivess.status": report.status,
        "minivess.input_kind": report.input_kind,
        "minivess.model.name": report.model.name,
        "minivess.model.version": report.model.version,
        "minivess.model.providers": list(report.model.providers),
        "minivess.series.count": len(report.series),
        "minivess.series.failed": len(report.series) - len(done),
        "minivess.series.ood": sum(1 for s in done if s.out_of_distribution),
        "dicom.series_instance_uids": [s.series_instance_uid for s in report.series],
        "dicom.modalities": sorted({s.modality for s in report.series if s.modality}),
    }
    reasons = sorted({s.error_reason for s in report.series if s.error_reason})
    if reasons:
        attributes["minivess.error_reasons"] = reasons
    scores = [s.uncertainty_score for s in done if s.uncertainty_score is not None]
    if scores:
        attributes["minivess.uncertainty_score.max"] = max(scores)
    return attributes


class StudyTracer:
    """Traces of study runs on one provider (made by ``configure_tracing``)."""

    def __init__(self, provider: TracerProvider) -> None:
        if not isinstance(provider.id_generator, CorrelationIdGenerator):
            raise TypeError("the provider needs a CorrelationIdGenerator (configure_tracing)")
        self.provider = provider
        self.tracer = provider.get_tracer("minivess.appliance")

    def _root(self, correlation_id: str, start_time: int | None) -> Span:
        token = _PENDING_TRACE_ID.set(trace_id_from_correlation_id(correlation_id))
        try:
            # An empty context: the study span is a root even inside another span.
            span = self.tracer.start_span("study", context=Context(), start_time=start_time)
        finally:
            _PENDING_TRACE_ID.reset(token)
        span.set_attribute("minivess.correlation_id", correlation_id)
        return span

    @contextmanager
    def study(self, correlation_id: str) -> Iterator[Span]:
        """The root span of a live study; stages opened inside with ``stage`` nest under it."""
        span = self._root(correlation_id, None)
        with trace.use_span(span, end_on_exit=True, record_exception=True):
            yield span

    @contextmanager
    def stage(self, name: str, **attributes: str | int | float | bool) -> Iterator[Span]:
        """A live stage span (receive, export, ...) under the current span."""
        with self.tracer.start_as_current_span(name, attributes=attributes) as span:
            yield span

    def record_report(self, report: RunReport, parent: Span | None = None) -> Span:
        """Spans of a finished run: a root (unless ``parent``) and one child per stage.

        ``timings_s`` holds seconds per stage summed over series, not start times, so the
        stage spans are laid end to end from ``started_at`` in pipeline order, each with
        its exact duration; ``inference:<member>`` spans are laid the same way inside the
        ``inference`` span. Attribute ``minivess.timing = "sequential"`` says so.
        """
        started, finished = _ns(report.started_at), _ns(report.finished_at)
        root = parent if parent is not None else self._root(report.correlation_id, started)
        for key, value in report_attributes(report).items():
            root.set_attribute(key, value)
        if report.status == "failed":
            root.set_status(Status(StatusCode.ERROR, "run failed"))
        context = trace.set_span_in_context(root)
        cursor = started
        for name in _ordered_stages(report.timings_s):
            end = cursor + int(report.timings_s[name] * 1e9)
            span = self.tracer.start_span(
                name,
                context=context,
                start_time=cursor,
                attributes={"minivess.stage": name, "minivess.timing": "sequential"},
            )
            if name == "inference":
                self._member_spans(report, span, cursor)
            span.end(end_time=end)
            cursor = end
        if parent is None:
            root.end(end_time=max(finished, cursor))
        return root

    def _member_spans(self, report: RunReport, inference: Span, start: int) -> None:
        context = trace.set_span_in_context(inference)
        cursor = start
        for key, seconds in report.timings_s.items():
            if not key.startswith(MEMBER_PREFIX):
                continue
            member = key[len(MEMBER_PREFIX) :]
            end = cursor + int(seconds * 1e9)
            span = self.tracer.start_span(
                key,
                context=context,
                start_time=cursor,
                attributes={
                    "minivess.stage": "inference",
                    "minivess.member": member,
                    "minivess.timing": "sequential",
                },
            )
            span.end(end_time=end)
            cursor = end
