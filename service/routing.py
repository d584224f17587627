"""Routing rules: whether a complete study is processed, ignored or routed, and its priority.

A rule file (``routing_rules``: YAML, or JSON when the name ends in ``.json``; example in
``service/routing.example.yaml``) holds an ordered list of rules and a default. When the
grouper finds a study complete (its quiet period over), the first rule whose ``when``
matches decides; no match, the ``default`` does::

    off_peak: {start: "20:00", end: "06:00", timezone: Europe/Berlin}
    rules:
      - name: stroke-stat
        when: {calling_ae: ER_CT*, StudyDescription: ["*STROKE*", "*STAT*"]}
        priority: stat
      - name: research-archive
        when: {StudyDescription: RESEARCH*}
        action: route
        destination: RESEARCH
      - name: no-mr-spine
        when: {Modality: MR, BodyPartExamined: "*SPINE*"}
        action: ignore
    default: {action: process, priority: normal}

``when`` maps ``calling_ae`` (the sender's AE title; DIMSE only, empty for HTTP uploads)
or any DICOM keyword of the study's first instance to one glob pattern or a list of them
(``fnmatch``, case-insensitive; a list matches when any pattern does); every key must
match, an empty ``when`` matches every study. Actions:

- ``process`` (default): queued for the pipeline with ``priority`` ``stat`` (claimed
  before every other queued study), ``normal`` or ``off_peak`` (not claimed before the
  ``off_peak`` window opens; queued as normal inside it);
- ``route``: not processed; the received instances are C-STOREd to ``destination`` (the
  AE title or ``AE@host:port`` name of an ``export_destinations`` entry, which may be
  ``results: false`` so that it gets nothing else) with the export's retries and
  dead-letter; the spool files are hard-linked into ``outputs/<job id>/`` first;
- ``ignore``: not processed, nothing sent; the job ends ``ignored`` (journal: the rule's
  name, ``error_reason`` ``routing-ignored``) and its instances are kept, hard-linked,
  in ``var/ignored/<job id>/`` (to delete or re-send by hand): nothing acknowledged is
  lost.

Rule files are validated at start (unknown DICOM keywords, an unknown or ambiguous
destination, ``off_peak`` without its window refuse to start, exit code 78).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydicom
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import model_validator as after
from pydicom.datadict import tag_for_keyword
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from service.journal import Job, Journal
from service.settings import ServiceSettings, SettingsError

log = logging.getLogger(__name__)

Action = Literal["process", "ignore", "route"]
Priority = Literal["stat", "normal", "off_peak"]
# The journal's claim order (jobs.priority): higher first.
PRIORITIES: dict[Priority, int] = {"stat": 2, "normal": 1, "off_peak": 0}
CALLING_AE = "calling_ae"
EXAMPLE = Path(__file__).with_name("routing.example.yaml")  # documented, and tested valid


class Outcome(BaseModel):
    """What a rule (or the default) decides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action = "process"
    priority: Priority = "normal"
    destination: str | None = Field(
        default=None, description="route: AE title or AE@host:port of an export destination"
    )

    @after(mode="after")
    def _destination_with_route(self) -> Self:
        if (self.action == "route") != (self.destination is not None):
            raise ValueError("action 'route' needs a destination, and only it takes one")
        return self


class Rule(Outcome):
    name: str = Field(min_length=1, max_length=64)
    when: dict[str, str | list[str]] = Field(default_factory=dict)

    @field_validator("when")
    @classmethod
    def _keys(cls, when: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        for key in when:
            if key != CALLING_AE and tag_for_keyword(key) is None:
                raise ValueError(f"{key!r} is neither calling_ae nor a DICOM keyword")
        return when

    def matches(self, attributes: dict[str, str]) -> bool:
        for key, patterns in self.when.items():
            value = attributes.get(key, "").upper()
            listed = [patterns] if isinstance(patterns, str) else patterns
            if not any(fnmatchcase(value, pattern.upper()) for pattern in listed):
                return False
        return True


class OffPeak(BaseModel):
    """The daily window in which off-peak studies run (may span midnight)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time
    end: time
    timezone: str | None = Field(default=None, description="IANA name; None = the host's")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}") from None
        return value

    def wait_until(self, now: float) -> float | None:
        """None inside the window, else the time the window next opens."""
        local = (
            datetime.fromtimestamp(now, ZoneInfo(self.timezone))
            if self.timezone
            else datetime.fromtimestamp(now).astimezone()
        )
        clock, start, end = local.time(), self.start, self.end
        inside = start <= clock < end if start < end else (clock >= start or clock < end)
        if inside:
            return None
        opens = local.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
        return (opens if opens > local else opens + timedelta(days=1)).timestamp()


class RoutingRules(BaseModel):
    """A rule file: first matching rule wins, else the default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[Rule] = Field(default_factory=list)
    default: Outcome = Field(default_factory=Outcome)
    off_peak: OffPeak | None = None

    @after(mode="after")
    def _consistent(self) -> Self:
        names = [rule.name for rule in self.rules]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique")
        uses = [o for o in (*self.rules, self.default) if o.priority == "off_peak"]
        if uses and self.off_peak is None:
            raise ValueError("priority off_peak needs the off_peak window (start, end)")
        return self

    def decide(self, attributes: dict[str, str]) -> tuple[str | None, Outcome]:
        """(rule name or None for the default, its outcome)."""
        for rule in self.rules:
            if rule.matches(attributes):
                return rule.name, rule
        return None, self.default


def load_rules(path: Path) -> RoutingRules:
    """Read and validate a rule file, or SettingsError naming the file and the problem."""
    try:
        text = path.read_text()
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml  # only for YAML rule files

            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as error:
                raise ValueError(f"not valid YAML: {error}") from None
        return RoutingRules.model_validate(data or {})
    except (OSError, ValueError) as error:  # ValidationError and YAML/JSON errors included
        raise SettingsError(f"routing rules {path}: {error}") from None


def study_attributes(path: Path | None, source: str) -> dict[str, str]:
    """The keyword -> text of one instance's header, and ``calling_ae`` (DIMSE only)."""
    if path is None:
        return {}
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (OSError, InvalidDicomError):
        return {}
    found: dict[str, str] = {}
    for element in ds:
        if element.keyword and element.VR != "SQ":
            value = element.value
            found[element.keyword] = (
                "\\".join(str(v) for v in value) if isinstance(value, MultiValue) else str(value)
            )
    meta = getattr(ds, "file_meta", None)
    calling = meta.get("SourceApplicationEntityTitle", "") if meta is not None else ""
    found[CALLING_AE] = str(calling).strip() if source == "dimse" else ""
    return found


def link_files(paths: list[Path], folder: Path) -> list[str]:
    """Hard-link (copy across file systems) ``paths`` into a fresh ``folder``."""
    shutil.rmtree(folder, ignore_errors=True)  # a partial folder of an earlier try
    folder.mkdir(parents=True)
    made = []
    for path in paths:
        target = folder / path.name
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
        made.append(str(target))
    return made


@dataclass(frozen=True)
class Router:
    """Applies the rules to complete studies, in the grouper's pass."""

    settings: ServiceSettings
    rules: RoutingRules
    destinations: dict[str, str]  # what a rule names -> the destination's channel name

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> Router:
        rules = load_rules(settings.routing_rules) if settings.routing_rules else RoutingRules()
        names: dict[str, str] = {}
        for rule in (*rules.rules, rules.default):
            if rule.destination is not None:
                names[rule.destination] = _resolve(settings, rule.destination)
        return cls(settings, rules, names)

    def dispatch(self, journal: Journal, job: Job, cutoff: float, now: float) -> Job:
        """Decide and record one quiet job; IllegalTransitionError when an instance came
        in since ``cutoff`` (nothing decided: the next pass judges the study again)."""
        paths = journal.instance_paths(job.job_id)
        rule, outcome = self.rules.decide(study_attributes(paths[0] if paths else None, job.source))
        if outcome.action == "ignore":
            kept = self.settings.var_dir / "ignored" / job.job_id
            return journal.ignore(job.job_id, cutoff, kept, link_files(paths, kept), rule)
        if outcome.action == "route" and outcome.destination is not None:
            folder = self.settings.outputs_dir / job.job_id
            files = link_files(paths, folder)
            target = self.destinations[outcome.destination]
            return journal.route(job.job_id, cutoff, folder, files, [target], rule)
        window = self.rules.off_peak
        waits = window.wait_until(now) if outcome.priority == "off_peak" and window else None
        priority = PRIORITIES[outcome.priority]
        return journal.queue_routed(job.job_id, cutoff, priority, waits, rule)


def _resolve(settings: ServiceSettings, named: str) -> str:
    found = [d.name for d in settings.export_destinations if named in (d.ae_title, d.name)]
    if len(found) != 1:
        problem = "is not" if not found else "names several"
        raise SettingsError(
            f"routing destination {named!r} {problem} of export_destinations "
            "(give its AE title, or AE@host:port)"
        )
    return found[0]
