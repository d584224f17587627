"""Prometheus metrics of the appliance: one registry, names by Prometheus conventions.

Units are in the names (``_seconds``, ``_bytes``), counters end in ``_total``, labels
have small fixed value sets (stage, reason, outcome), never UIDs or anything that could
identify a patient. Counters and histograms whose label values are a fixed set (the
stages, interfaces, outcomes, channels and routing actions below; the ensemble members
once the model is named) start every series at 0, so a dashboard or an alert sees "none
yet" as 0 rather than as no data, and ``rate()``/``increase()`` count the first event
(a series born at 1 shows no increase). The Grafana dashboard over these metrics:
``helm/minivess/dashboards/minivess.json``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from operators.run_report import ModelSummary, RunReport

# Studies take seconds to minutes; per-stage times from milliseconds up.
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
STUDY_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200)

# The label values of the fixed-set counters and histograms (each series is created at 0;
# the inference histogram's per-member series when the model is named, set_model_info).
PIPELINE_STAGES = ("receive", "load", "select", "volume", "inference", "uncertainty", "write",
                   "export")  # fmt: skip
INTERFACES = ("dimse", "http")
STUDY_OUTCOMES = ("done", "failed")
EXPORT_OUTCOMES = ("ok", "retried", "dead_lettered")
NOTIFICATION_CHANNELS = ("fhir", "hl7")
NOTIFICATION_OUTCOMES = ("sent", "retried", "dead_lettered")
ROUTING_ACTIONS = ("process", "ignore", "route")
FLAGGED = ("true", "false")


class ApplianceMetrics:
    """All metrics, registered in their own registry (one per service process or test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.stage_seconds = Histogram(
            "minivess_stage_duration_seconds",
            "Time spent in one pipeline stage for one series (receive, load, select, volume, "
            "inference, uncertainty, write, export); inference also per ensemble member.",
            ["stage", "member"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.study_seconds = Histogram(
            "minivess_study_latency_seconds",
            "End-to-end study latency: last instance received -> export done.",
            buckets=STUDY_BUCKETS,
            registry=r,
        )
        self.instances_received = Counter(
            "minivess_instances_received_total",
            "Instances accepted by C-STORE or HTTP.",
            ["interface"],
            registry=r,
        )
        self.instances_rejected = Counter(
            "minivess_instances_rejected_total",
            "Instances refused, by reason (service.storage_status.Reason).",
            ["interface", "reason"],
            registry=r,
        )
        self.instances_duplicate = Counter(
            "minivess_instances_duplicate_total",
            "Instances received again (same SOP Instance UID): acknowledged, not stored twice.",
            ["interface"],
            registry=r,
        )
        self.studies = Counter(
            "minivess_studies_total",
            "Studies finished, by outcome (done, failed).",
            ["outcome"],
            registry=r,
        )
        self.exports = Counter(
            "minivess_exports_total",
            "Export attempts, by outcome (ok, retried, dead_lettered).",
            ["outcome"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "minivess_queue_depth",
            "Jobs waiting or running (received, queued, processing, exporting).",
            registry=r,
        )
        self.spool_bytes = Gauge(
            "minivess_spool_bytes", "Bytes held in the receive spool.", registry=r
        )
        self.uncertainty_score = Histogram(
            "minivess_study_uncertainty_score",
            "Study-level uncertainty score: ensemble disagreement on the mask "
            "(1 - mean pairwise Dice of the members, 0..1).",
            buckets=(0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0),
            registry=r,
        )
        self.ood_flags = Counter(
            "minivess_ood_flags_total",
            "Series flagged out-of-distribution (answered, marked for review).",
            registry=r,
        )
        self.drift_share = Gauge(
            "minivess_drift_share",
            "Share of drifted features in the latest drift report.",
            registry=r,
        )
        self.studies_analysed = Counter(
            "minivess_studies_analysed_total",
            "Studies the pipeline answered (at least one series done), by whether any "
            "series was flagged out-of-distribution (flagged: true/false; a flagged study "
            "is answered and marked for human review). Review flag rate: "
            'flagged="true" / all.',
            ["flagged"],
            registry=r,
        )
        self.model_info = Info(
            "minivess_model",
            "The loaded ensemble (name, version, providers, members); value 1.",
            registry=r,
        )
        self.notifications = Counter(
            "minivess_notifications_total",
            "Result notifications to the record system, by channel (fhir: FHIR R4 "
            "DiagnosticReport; hl7: HL7 v2 ORU^R01 over MLLP) and outcome (sent; retried: "
            "an attempt failed and another is scheduled; dead_lettered: retries exhausted).",
            ["channel", "outcome"],
            registry=r,
        )
        self.routing_decisions = Counter(
            "minivess_routing_decisions_total",
            "Routing rule decisions on complete studies, by action (process: run the "
            "pipeline; ignore: not processed; route: forwarded to another destination).",
            ["action"],
            registry=r,
        )
        for stage in PIPELINE_STAGES:
            self.stage_seconds.labels(stage=stage, member="")
        for interface in INTERFACES:
            self.instances_received.labels(interface=interface)
            self.instances_duplicate.labels(interface=interface)
        for outcome in STUDY_OUTCOMES:
            self.studies.labels(outcome=outcome)
        for outcome in EXPORT_OUTCOMES:
            self.exports.labels(outcome=outcome)
        for flagged in FLAGGED:
            self.studies_analysed.labels(flagged=flagged)
        for channel in NOTIFICATION_CHANNELS:
            for outcome in NOTIFICATION_OUTCOMES:
                self.notifications.labels(channel=channel, outcome=outcome)
        for action in ROUTING_ACTIONS:
            self.routing_decisions.labels(action=action)


def stage_label(timing_key: str) -> tuple[str, str]:
    """(stage, member) labels for a ``RunReport.timings_s`` key.

    The stage is the key's first word, lower-cased: "write SEG", "write uncertainty map"
    and "write SR" are all stage "write" (the stage set in the histogram's help; the
    per-output split is in the traces). ``"inference:<member>"`` -> ("inference", member);
    the whole-ensemble ``"inference"`` and every other stage have member "", so
    ``{stage="inference", member=""}`` is the whole ensemble: do not sum over member.
    """
    stage, _, member = timing_key.partition(":")
    return stage.strip().split(" ")[0].lower(), member


def observe_run_report(
    metrics: ApplianceMetrics, report: RunReport, study_latency_s: float | None = None
) -> None:
    """Record one finished pipeline run: stage times, uncertainty scores, OOD flags.

    One observation per (stage, member) and run (the write outputs summed into "write").
    A run with at least one series done counts once in ``minivess_studies_analysed_total``
    (flagged="true" when any done series is out-of-distribution).
    ``study_latency_s`` (last instance received -> export done) is observed when given;
    the studies/exports counters are the caller's (they depend on the export outcome).
    """
    summed: dict[tuple[str, str], float] = {}
    for key, seconds in report.timings_s.items():
        labels = stage_label(key)
        summed[labels] = summed.get(labels, 0.0) + seconds
    for (stage, member), seconds in summed.items():
        metrics.stage_seconds.labels(stage=stage, member=member).observe(seconds)
    done = [series for series in report.series if series.status == "done"]
    for series in done:
        if series.uncertainty_score is not None:
            metrics.uncertainty_score.observe(series.uncertainty_score)
        if series.out_of_distribution:
            metrics.ood_flags.inc()
    if done:
        flagged = any(series.out_of_distribution for series in done)
        metrics.studies_analysed.labels(flagged="true" if flagged else "false").inc()
    if study_latency_s is not None:
        metrics.study_seconds.observe(study_latency_s)


def set_model_info(metrics: ApplianceMetrics, model: ModelSummary) -> None:
    """``minivess_model_info{name, version, providers, members}`` from the loaded ensemble,
    and the inference histogram's series of each member, at 0."""
    metrics.model_info.info(
        {
            "name": model.name,
            "version": model.version,
            "providers": ",".join(model.providers),
            "members": ",".join(model.members),
        }
    )
    for member in model.members:
        metrics.stage_seconds.labels(stage="inference", member=member)
