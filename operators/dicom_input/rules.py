"""Selection rules in the MONAI Deploy App SDK's JSON format, and how a series matches.

The format is that of ``monai.deploy.operators.DICOMSeriesSelectorOperator``::

    {"selections": [{"name": "CT volume",
                     "conditions": {"Modality": "(?i)CT", "SliceThickness": [0.5, 3],
                                    "ImageType": ["PRIMARY", "!LOCALIZER"],
                                    "ImageOrientationPatient": "Axial"}}]}

Condition keys are DICOM keywords (PS3.6); values match as follows:

* text: case-insensitive equality, else a case-insensitive regular-expression search;
  on a number the expression must match its whole decimal text;
* number: exact match; ``[value, op]`` with ``op`` one of ``> >= < <= !=``; ``[low, high]``
  an inclusive range;
* list of terms (multi-valued attributes such as Image Type (0008,0008), PS3.3 C.7.6.1.1.2):
  every term must be one of the values, a ``"!TERM"`` must not be; a single ``"!TERM"``
  string is an exclusion too;
* ``"ImageOrientationPatient": "Axial" | "Coronal" | "Sagittal"``: the patient axis closest
  to the slice normal (row x column cosines of PS3.3 C.7.6.2.1.1), for every instance.
* ``NumberOfSeriesRelatedInstances`` (0020,1209) is the number of instances received.

Where matching differs from the SDK's, on purpose:

* a condition made only of exclusions matches when the series lacks the attribute (the
  SDK rejects a series whenever a named attribute is missing, so a rule excluding
  ``LOCALIZER`` would drop every series without Image Type);
* terms match whole values of a multi-valued attribute, not substrings of its text, and
  an Image Type that differs between instances must satisfy the terms in each of them;
* orientation needs no Patient Position: Image Orientation (Patient) is already in
  patient coordinates;
* non-image objects (SR, SEG, ...) never match; a ``null`` condition is ignored (the SDK
  also ignores ``0`` and ``""``), and rules are validated when loaded, not when first
  applied: unknown keywords, bad expressions and malformed lists are refused with
  :class:`SelectionRulesError`.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, field_validator
from pydicom.datadict import tag_for_keyword

from operators.dicom_input.loader import DicomSeries
from operators.errors import PipelineError
from settings.base import EXIT_CONFIG

_RELATIONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "!=": operator.ne,
}
_ORIENTATIONS = ("Sagittal", "Coronal", "Axial")  # dominant axis of the normal: L, P, S
_PSEUDO_KEYWORDS = frozenset({"NumberOfSeriesRelatedInstances"})


class SelectionRulesError(PipelineError, exit_code=EXIT_CONFIG, reason="bad-selection-rules"):
    """The selection rules are malformed: a configuration error (exit code 78, EX_CONFIG)."""


@dataclass(frozen=True)
class _Condition:
    keyword: str
    kind: str  # "text", "terms", "number", "relation", "range" or "orientation"
    text: str = ""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    numbers: tuple[float, ...] = ()
    relation: str = ""

    @property
    def pure_exclusion(self) -> bool:
        return self.kind == "terms" and not self.include


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parse_condition(keyword: str, value: Any) -> _Condition:
    """Turn one ``keyword: value`` of a rule into a condition, or say what is wrong."""
    if keyword == "ImageOrientationPatient" and isinstance(value, str):
        label = value.strip().capitalize()
        if label not in _ORIENTATIONS:
            raise ValueError(f"{keyword} must be one of Axial, Coronal, Sagittal, not {value!r}")
        return _Condition(keyword, "orientation", text=label)
    if isinstance(value, str):
        if value.startswith("!"):
            return _terms(keyword, [value])
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(
                f"{keyword}: {value!r} is not a valid regular expression: {exc}"
            ) from None
        return _Condition(keyword, "text", text=value)
    if _is_number(value):
        return _Condition(keyword, "number", numbers=(float(value),))
    if isinstance(value, list) and value:
        if len(value) == 2 and _is_number(value[0]) and isinstance(value[1], str):
            if value[1] not in _RELATIONS:
                raise ValueError(
                    f"{keyword}: unsupported relational operator {value[1]!r}; "
                    f"use one of {', '.join(_RELATIONS)}"
                )
            return _Condition(keyword, "relation", numbers=(float(value[0]),), relation=value[1])
        if len(value) == 2 and all(_is_number(v) for v in value):
            low, high = float(value[0]), float(value[1])
            if low > high:
                raise ValueError(f"{keyword}: range [{value[0]}, {value[1]}] has low > high")
            return _Condition(keyword, "range", numbers=(low, high))
        if all(isinstance(v, str) for v in value):
            return _terms(keyword, value)
    raise ValueError(
        f"{keyword}: unsupported condition {value!r}; expected text, a number, "
        "[number, operator], [low, high] or a list of terms"
    )


def _terms(keyword: str, values: Sequence[str]) -> _Condition:
    terms = [v.strip().upper() for v in values]
    if any(t in ("", "!") for t in terms):
        raise ValueError(f"{keyword}: empty term in {list(values)!r}")
    return _Condition(
        keyword,
        "terms",
        include=tuple(t for t in terms if not t.startswith("!")),
        exclude=tuple(t[1:] for t in terms if t.startswith("!")),
    )


class SelectionRule(BaseModel):
    """One named selection: a series qualifies when every condition matches."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = ""
    conditions: dict[str, Any]
    _parsed: tuple[_Condition, ...] = PrivateAttr(default=())

    @field_validator("name")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @field_validator("conditions")
    @classmethod
    def _known_keywords(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("a selection needs at least one condition")
        for keyword, condition in value.items():
            if tag_for_keyword(keyword) is None and keyword not in _PSEUDO_KEYWORDS:
                raise ValueError(f"unknown DICOM keyword {keyword!r}")
            if condition is not None:
                _parse_condition(keyword, condition)
        return value

    def model_post_init(self, __context: Any) -> None:
        self._parsed = tuple(
            _parse_condition(k, v) for k, v in self.conditions.items() if v is not None
        )

    def matches(self, series: DicomSeries) -> bool:
        """Whether ``series`` is an image series that meets every condition."""
        return series.is_image and all(_match(c, series) for c in self._parsed)


class SelectionRules(BaseModel):
    """The ``{"selections": [...]}`` document; rules are tried in order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    selections: list[SelectionRule]

    @field_validator("selections")
    @classmethod
    def _not_empty(cls, value: list[SelectionRule]) -> list[SelectionRule]:
        if not value:
            raise ValueError("at least one selection is needed")
        return value

    @classmethod
    def from_json(cls, text: str | bytes) -> SelectionRules:
        """Parse rules from JSON text; :class:`SelectionRulesError` says what is wrong."""
        return cls._validated(cls.model_validate_json, text)

    @classmethod
    def from_data(cls, data: Any) -> SelectionRules:
        """Rules from already parsed JSON (a dict), with the same errors as ``from_json``."""
        return cls._validated(cls.model_validate, data)

    @classmethod
    def _validated(cls, validate: Callable[[Any], SelectionRules], data: Any) -> SelectionRules:
        try:
            return validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'document'}: {err['msg']}"
                for err in exc.errors()
            )
            raise SelectionRulesError(f"invalid selection rules: {problems}") from None

    @classmethod
    def from_file(cls, path: Path | str) -> SelectionRules:
        """Rules from a UTF-8 JSON file; an unreadable file is a :class:`SelectionRulesError`."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SelectionRulesError(f"cannot read selection rules file {path}: {exc}") from None
        return cls.from_json(text)


def orientation_label(iop: Sequence[float]) -> str:
    """Axial, Coronal or Sagittal: the patient axis closest to the normal of ``iop``."""
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:6], float))
    return _ORIENTATIONS[int(np.argmax(np.abs(normal)))]


def _as_number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _match_scalar(cond: _Condition, value: Any) -> bool:
    if cond.kind == "text":
        text = str(value)
        if text.casefold() == cond.text.casefold():
            return True
        if _is_number(value):  # as the SDK: an expression on a number matches it whole
            return re.fullmatch(cond.text, text, re.IGNORECASE) is not None
        return re.search(cond.text, text, re.IGNORECASE) is not None
    number = _as_number(value)
    if number is None:
        return False
    if cond.kind == "number":
        return math.isclose(number, cond.numbers[0], rel_tol=1e-9, abs_tol=1e-9)
    if cond.kind == "relation":
        return _RELATIONS[cond.relation](number, cond.numbers[0])
    return cond.numbers[0] <= number <= cond.numbers[1]


def _match(cond: _Condition, series: DicomSeries) -> bool:
    if cond.kind == "orientation":
        labels = {orientation_label(iop) for iop in series.orientations}
        return labels == {cond.text} if labels else False
    if cond.keyword == "ImageType":
        variants = [set(v) for v in series.image_types if v]
    else:
        value = series.attribute(cond.keyword)
        if value is None:
            variants = []
        elif cond.kind != "terms" and not isinstance(value, list):
            return _match_scalar(cond, value)
        else:
            items = value if isinstance(value, list) else [value]
            variants = [{str(v).strip().upper() for v in items}]
    if not variants:
        return cond.pure_exclusion  # see the module docstring: absent means "not excluded"
    if cond.kind == "text":  # a single term against a multi-valued attribute
        return all(any(_match_scalar(cond, v) for v in variant) for variant in variants)
    if cond.kind != "terms":
        return False
    return all(
        set(cond.include) <= variant and not set(cond.exclude) & variant for variant in variants
    )
