"""What the console shows, gathered from the journal and each job's own ``report.json``.

The journal says where a job is (state, times, attempts, export errors); the run's
report (``outputs/<job id>/report.json``, written by the pipeline) says what the run
found: stage timings, per series the uncertainty score against the model's threshold,
the review flag (out of distribution), the vessel volume, and which file is which.
A result file is only ever served or pictured when the journal lists it among the job's
outputs: the report names paths, the journal decides which may leave the appliance.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from operators.preview import axial_picture, mip_picture, png_bytes, telling_slices
from operators.preview.results import read_result_volumes
from operators.run_report import RunReport, SeriesOutcome
from service.journal import Job, Journal

COUNTED_JOBS = 1000  # the queue summary counts the states of the newest this many jobs
PICTURE_CACHE_ENTRIES = 32  # series whose pictures stay rendered (a few 100 kB each)


def read_report(job: Job) -> RunReport | None:
    """The run's report, or None (not run yet, removed, or unreadable)."""
    if not job.output_dir:
        return None
    try:
        return RunReport.model_validate_json((Path(job.output_dir) / "report.json").read_bytes())
    except (OSError, ValidationError, ValueError):
        return None


@dataclass(frozen=True)
class JobSummary:
    """One job as the console lists it."""

    job: Job
    report: RunReport | None

    @property
    def done_series(self) -> list[SeriesOutcome]:
        return [s for s in self.report.series if s.status == "done"] if self.report else []

    @property
    def flagged(self) -> bool | None:
        """True when any series is out of distribution (for human review); None unknown."""
        flags = [s.out_of_distribution for s in self.done_series]
        known = [flag for flag in flags if flag is not None]
        return any(known) if known else None

    @property
    def score(self) -> tuple[float, float] | None:
        """The highest series uncertainty score with its threshold."""
        scored = [(s.uncertainty_score, s.ood_threshold) for s in self.done_series
                  if s.uncertainty_score is not None and s.ood_threshold is not None]  # fmt: skip
        return max(scored) if scored else None

    @property
    def run_seconds(self) -> float | None:
        if self.report is None:
            return None
        try:
            started = datetime.fromisoformat(self.report.started_at)
            finished = datetime.fromisoformat(self.report.finished_at)
        except ValueError:
            return None
        return (finished - started).total_seconds()

    @property
    def stages(self) -> list[tuple[str, float]]:
        """Stage timings, longest first; ensemble members (``inference:<member>``) after
        the stages (they are parts of ``inference``, not more time)."""
        timings = self.report.timings_s if self.report else {}
        return sorted(timings.items(), key=lambda item: (":" in item[0], -item[1]))


def summaries(journal: Journal, limit: int) -> list[JobSummary]:
    return [JobSummary(job, read_report(job)) for job in journal.list_jobs(limit=limit)]


def state_counts(journal: Journal) -> Counter[str]:
    return Counter(job.state for job in journal.list_jobs(limit=COUNTED_JOBS))


def relative_outputs(job: Job) -> dict[str, Path]:
    """The job's result files by their path under its output folder (``<series>/<name>``:
    names repeat across series), plus its report."""
    if not job.output_dir:
        return {}
    root = Path(job.output_dir)
    files: dict[str, Path] = {}
    for listed in job.outputs:
        path = Path(listed)
        try:
            files[path.relative_to(root).as_posix()] = path
        except ValueError:  # outside the job's folder: listed by name alone
            files[path.name] = path
    if (root / "report.json").is_file():
        files["report.json"] = root / "report.json"
    return files


def pictured_files(job: Job, series: SeriesOutcome) -> tuple[Path, Path] | None:
    """The series' SEG and uncertainty map, when both are among the job's outputs."""
    listed = set(job.outputs)
    seg, uncertainty = series.outputs.get("seg"), series.outputs.get("uncertainty_map")
    if seg in listed and uncertainty in listed:
        return Path(str(seg)), Path(str(uncertainty))
    return None


class PictureCache:
    """PNG pictures per (job, series), rendered once from the result files and kept for
    the newest ``PICTURE_CACHE_ENTRIES`` series; keyed by the files' modification times
    too, so a re-run's new files are pictured anew. One series renders once even when
    the page's pictures are asked for at the same time, and one series at a time: a
    large study's map is read whole (512x512x256: ~270 MB), so browsers opening several
    study pages must not multiply that beside a running inference."""

    def __init__(self, entries: int = PICTURE_CACHE_ENTRIES) -> None:
        self.entries = entries
        self._lock = threading.Lock()
        self._renders: dict[tuple[object, ...], threading.Lock] = {}
        self._one_render = threading.Lock()
        self._cache: OrderedDict[tuple[object, ...], dict[str, bytes]] = OrderedDict()

    def pictures(self, job_id: str, seg: Path, uncertainty: Path) -> dict[str, bytes]:
        """``mip`` and ``slice-1``..``slice-3`` of the series (raises PreviewError or
        OSError when the files cannot be pictured)."""
        key = (job_id, str(seg), seg.stat().st_mtime_ns, str(uncertainty),
               uncertainty.stat().st_mtime_ns)  # fmt: skip
        with self._lock:
            render_lock = self._renders.setdefault(key, threading.Lock())
        with render_lock:
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key]
            try:
                with self._one_render:
                    rendered = self._render(seg, uncertainty)
            except BaseException:
                with self._lock:
                    self._renders.pop(key, None)
                raise
            with self._lock:
                self._cache[key] = rendered
                while len(self._cache) > self.entries:
                    evicted, _ = self._cache.popitem(last=False)
                    self._renders.pop(evicted, None)
                return rendered

    @staticmethod
    def _render(seg: Path, uncertainty: Path) -> dict[str, bytes]:
        volumes = read_result_volumes(seg, uncertainty)
        rendered = {"mip": png_bytes(mip_picture(volumes))}
        for number, index in enumerate(telling_slices(volumes.mask), 1):
            rendered[f"slice-{number}"] = png_bytes(axial_picture(volumes, index))
        return rendered
