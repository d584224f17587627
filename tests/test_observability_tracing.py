"""Traces of study runs (trace id = correlation id) and the RunReport -> metrics mapping."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from operators.run_report import ModelSummary, RunReport, SeriesOutcome
from service.observability.metrics import (
    ApplianceMetrics,
    observe_run_report,
    set_model_info,
    stage_label,
)
from service.observability.tracing import (
    StudyTracer,
    configure_tracing,
    trace_id_from_correlation_id,
)

TIMINGS = {
    "load": 0.0156,
    "select": 0.0006,
    "volume": 0.0152,
    "inference": 0.6581,
    "inference:unet-a": 0.3,
    "inference:segresnet-b": 0.2,
    "inference:unet-c": 0.15,
    "uncertainty": 0.006,
    "write SEG": 0.6604,
    "write uncertainty map": 0.0545,
    "write SR": 0.0477,
}
PATIENT_NAME = "DOE^JANE"


def _report(correlation_id: str, ood: bool = False) -> RunReport:
    return RunReport(
        correlation_id=correlation_id,
        status="done",
        input_path=f"/spool/{PATIENT_NAME}/study",  # a path may carry PHI: never exported
        input_kind="dicom",
        started_at="2026-11-29T16:41:28.448+00:00",
        finished_at="2026-11-29T16:41:29.917+00:00",
        timings_s=TIMINGS,
        model=ModelSummary(
            name="minivess-vessel-ensemble",
            version="1.0.0",
            providers=["CPUExecutionProvider"],
            members={"unet-a": "a" * 64, "segresnet-b": "b" * 64, "unet-c": "c" * 64},
        ),
        series=[
            SeriesOutcome(
                study_instance_uid="1.2.3",
                series_instance_uid="1.2.3.4",
                modality="CT",
                status="done",
                uncertainty_score=0.07,
                ood_threshold=0.158,
                out_of_distribution=ood,
            )
        ],
    )


def _spans(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in directory.glob("*.jsonl") for line in path.open()]


def _seconds(span: dict[str, Any]) -> float:
    start = datetime.fromisoformat(span["start_time"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(span["end_time"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


@pytest.mark.requirement("SRS-049")
def test_report_spans_share_the_correlation_id_one_per_stage(tmp_path: Path) -> None:
    correlation_id = uuid.uuid4().hex
    provider = configure_tracing(service_version="1.0.0", spans_dir=tmp_path)
    StudyTracer(provider).record_report(_report(correlation_id))
    provider.force_flush()
    spans = _spans(tmp_path)

    assert {span["context"]["trace_id"] for span in spans} == {f"0x{correlation_id}"}
    names = [span["name"] for span in spans]
    stages = [key for key in TIMINGS if ":" not in key]
    members = [key for key in TIMINGS if ":" in key]
    assert sorted(names) == sorted(["study", *TIMINGS])  # one span per stage, no more
    by_name = {span["name"]: span for span in spans}
    root = by_name["study"]
    assert root["parent_id"] is None
    for stage in stages:
        assert by_name[stage]["parent_id"] == root["context"]["span_id"], stage
    for member in members:
        assert by_name[member]["parent_id"] == by_name["inference"]["context"]["span_id"]
        assert by_name[member]["attributes"]["minivess.member"] == member.split(":")[1]
    for key, seconds in TIMINGS.items():
        assert _seconds(by_name[key]) == pytest.approx(seconds, abs=2e-6), key
    # Stages are laid end to end in pipeline order from started_at.
    order = sorted(stages, key=lambda s: by_name[s]["start_time"])
    assert order == stages
    assert by_name["load"]["start_time"] == "2026-11-29T16:41:28.448000Z"
    assert _seconds(root) == pytest.approx(1.469, abs=2e-6)

    attributes = root["attributes"]
    assert attributes["minivess.correlation_id"] == correlation_id
    assert attributes["dicom.series_instance_uids"] == ["1.2.3.4"]
    assert attributes["minivess.model.version"] == "1.0.0"
    assert PATIENT_NAME not in json.dumps(spans)  # no PHI (the input path is not exported)


@pytest.mark.requirement("SRS-049")
def test_live_study_span_is_a_root_with_the_correlation_id(tmp_path: Path) -> None:
    correlation_id = uuid.uuid4().hex
    provider = configure_tracing(spans_dir=tmp_path)
    tracer = StudyTracer(provider)
    outer = provider.get_tracer("test").start_span("unrelated")
    with trace.use_span(outer, end_on_exit=True), tracer.study(correlation_id) as study:
        with tracer.stage("receive", instances=12):
            pass
        tracer.record_report(_report(correlation_id), parent=study)
        with tracer.stage("export", attempt=1):
            pass
    provider.force_flush()
    spans = {span["name"]: span for span in _spans(tmp_path)}
    study_span = spans["study"]
    assert study_span["parent_id"] is None  # not a child of the unrelated span
    assert study_span["context"]["trace_id"] == f"0x{correlation_id}"
    for name in ("receive", "load", "inference", "write SR", "export"):
        assert spans[name]["context"]["trace_id"] == f"0x{correlation_id}"
        assert spans[name]["parent_id"] == study_span["context"]["span_id"]
    assert spans["unrelated"]["context"]["trace_id"] != f"0x{correlation_id}"


@pytest.mark.requirement("SRS-049")
def test_correlation_id_must_be_a_trace_id() -> None:
    assert trace_id_from_correlation_id("0" * 31 + "1") == 1
    for bad in ("0" * 32, "ABCDEF" + "0" * 26, "abc", str(uuid.uuid4())):
        with pytest.raises(ValueError, match="32 lowercase hex"):
            trace_id_from_correlation_id(bad)


class _Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Collector.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.requirement("SRS-049")
def test_otlp_http_exporter_sends_the_study_trace() -> None:
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        correlation_id = uuid.uuid4().hex
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
        provider = configure_tracing(otlp_endpoint=endpoint)
        StudyTracer(provider).record_report(_report(correlation_id))
        provider.shutdown()  # flushes the batch processor
    finally:
        server.shutdown()
        server.server_close()
    assert _Collector.received and {path for path, _ in _Collector.received} == {"/v1/traces"}
    spans = []
    for _, body in _Collector.received:
        request = ExportTraceServiceRequest.FromString(body)
        spans += [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(spans) == len(TIMINGS) + 1
    assert {span.trace_id.hex() for span in spans} == {correlation_id}


@pytest.mark.requirement("SRS-048")
def test_observe_run_report_maps_stages_members_and_flags() -> None:
    metrics = ApplianceMetrics()
    report = _report(uuid.uuid4().hex, ood=True)
    observe_run_report(metrics, report, study_latency_s=7.5)
    set_model_info(metrics, report.model)
    value = metrics.registry.get_sample_value
    assert stage_label("write uncertainty map") == ("write", "")
    write = {"stage": "write", "member": ""}
    assert value("minivess_stage_duration_seconds_count", write) == 1  # one per run
    assert value("minivess_stage_duration_seconds_sum", write) == pytest.approx(0.7626)
    assert value(
        "minivess_stage_duration_seconds_sum", {"stage": "inference", "member": "unet-a"}
    ) == pytest.approx(0.3)
    assert value(
        "minivess_stage_duration_seconds_sum", {"stage": "inference", "member": ""}
    ) == pytest.approx(0.6581)
    assert value("minivess_study_latency_seconds_count") == 1
    assert value("minivess_study_uncertainty_score_sum") == pytest.approx(0.07)
    assert value("minivess_ood_flags_total") == 1
    assert value("minivess_studies_analysed_total", {"flagged": "true"}) == 1
    assert value("minivess_studies_analysed_total", {"flagged": "false"}) == 0  # created at 0
    info = {
        "name": "minivess-vessel-ensemble",
        "version": "1.0.0",
        "providers": "CPUExecutionProvider",
        "members": "unet-a,segresnet-b,unet-c",
    }
    assert value("minivess_model_info", info) == 1
