"""The selection rule format (the MONAI Deploy SDK's JSON rules) and how rules select
series: the SDK's example, each kind of condition, first rule wins, and malformed rules
that say what is wrong.

What the DICOM input tests share: tests/dicom_input_support.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from operators.dicom_input import (
    DEFAULT_RULES,
    SelectionRules,
    SelectionRulesError,
    scan_dicom_folder,
    select_series,
)
from operators.errors import NoQualifyingSeriesError
from tests.dicom_input_support import (  # the *_fixture names: the module's fixtures
    ct_fixture,  # noqa: F401  (mixed needs it)
    mixed_fixture,  # noqa: F401
)

SDK_EXAMPLE = """
{
    "selections": [
        {"name": "CT Series 1", "conditions": {"StudyDescription": "(?i)^Spleen",
            "Modality": "(?i)CT", "SeriesDescription": "(?i)^No series description|(.*?)"}},
        {"name": "CT Series 2", "conditions": {"Modality": "CT", "BodyPartExamined": "Abdomen",
            "SeriesDescription" : "Not to be matched. For illustration only."}},
        {"name": "CT Series 3", "conditions": {"StudyDescription": "(.*?)", "Modality": "(?i)CT",
            "ImageType": ["PRIMARY", "ORIGINAL", "AXIAL"], "SliceThickness": [3, 5]}},
        {"name": "CT Series 4", "conditions": {"StudyDescription": "(.*?)", "Modality": "(?i)CT",
            "ImageOrientationPatient": "Axial", "SliceThickness": [2, ">"]}},
        {"name": "CT Series 5", "conditions": {"StudyDescription": "(.*?)", "Modality": "(?i)CT",
            "ImageType": ["PRIMARY", "!SECONDARY"]}}
    ]
}
"""


def rule(**conditions: object) -> SelectionRules:
    return SelectionRules.from_json(
        json.dumps({"selections": [{"name": "r", "conditions": conditions}]})
    )


@pytest.mark.requirement("SRS-002")
def test_sdk_example_rules_parse_and_match(mixed: tuple[Path, dict], tmp_path: Path) -> None:
    folder, _ = mixed
    rules = SelectionRules.from_json(SDK_EXAMPLE)
    assert [r.name for r in rules.selections] == [f"CT Series {i}" for i in range(1, 6)]
    (tmp_path / "rules.json").write_text(SDK_EXAMPLE)
    assert SelectionRules.from_file(tmp_path / "rules.json") == rules
    selected = select_series(scan_dicom_folder(folder), rules)
    # Not Spleen, not Abdomen, slices thinner than 2 mm: only rule 5 (PRIMARY, not
    # SECONDARY) matches, localizer included; each series once, by series number.
    assert [(s.name, s.series_number) for s in selected] == [
        ("CT Series 5", 1),
        ("CT Series 5", 7),
        ("CT Series 5", 1001),
    ]


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ({"SeriesDescription": "synthetic ct angio"}, [1, 7]),  # equality, any case
        ({"SeriesDescription": "LOCAL"}, [1001]),  # regex search
        ({"SeriesDescription": "^ANGIO"}, []),
        ({"SeriesNumber": 7}, [7]),
        ({"SeriesNumber": [7, "<"]}, [1]),
        ({"SeriesNumber": [1, 1001]}, [1, 7, 1001]),
        ({"SeriesNumber": [2, 1000]}, [7]),
        ({"SeriesNumber": "1.*"}, [1, 1001]),  # a regex on a number matches it whole
        ({"NumberOfSeriesRelatedInstances": [10, ">="]}, [1, 7]),
        ({"ImageType": ["primary", "LOCALIZER"]}, [1001]),
        ({"ImageType": ["ORIGINAL", "!LOCALIZER"]}, [1, 7]),
        ({"ImageType": "!AXIAL"}, [1001]),
        ({"ImageType": ["PRIM"]}, []),  # whole values, not substrings
        ({"ImageOrientationPatient": "axial"}, [1, 7]),
        ({"ImageOrientationPatient": "Sagittal"}, []),  # the localizer is sagittal + coronal
        # An attribute the series lack: exclusions pass, anything else fails.
        ({"ContrastBolusAgent": "!IODINE"}, [1, 7, 1001]),
        ({"ContrastBolusAgent": ["!IODINE", "!GADOLINIUM"]}, [1, 7, 1001]),
        ({"ContrastBolusAgent": "IODINE"}, []),
        ({"ContrastBolusAgent": [1, ">"]}, []),
        ({"Modality": "CT", "ContrastBolusAgent": None}, [1, 7, 1001]),  # null is ignored
    ],
)
@pytest.mark.requirement("SRS-002")
def test_condition_matching(mixed: tuple[Path, dict], conditions: dict, expected: list) -> None:
    scan_result = scan_dicom_folder(mixed[0])
    try:
        selected = [s.series_number for s in select_series(scan_result, rule(**conditions))]
    except NoQualifyingSeriesError:
        selected = []
    assert selected == expected


@pytest.mark.requirement("SRS-002")
def test_default_rules_and_first_rule_wins(mixed: tuple[Path, dict]) -> None:
    assert [r.name for r in DEFAULT_RULES.selections] == ["CT volume", "MR volume"]
    rules = SelectionRules.from_json(
        json.dumps(
            {
                "selections": [
                    {"name": "series 7", "conditions": {"SeriesNumber": 7}},
                    {"name": "any CT", "conditions": {"Modality": "CT"}},
                ]
            }
        )
    )
    selected = select_series(scan_dicom_folder(mixed[0]), rules)
    assert [(s.name, s.series_number) for s in selected] == [
        ("series 7", 7),
        ("any CT", 1),
        ("any CT", 1001),
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            '{"selections": [{"name": "a", "conditions": {"Modalty": "CT"}}]}',
            "unknown DICOM keyword 'Modalty'",
        ),
        (
            '{"selections": [{"conditions": {"SliceThickness": [2, "=>"]}}]}',
            "unsupported relational operator '=>'",
        ),
        ('{"selections": [{"conditions": {"SliceThickness": [5, 3]}}]}', "low > high"),
        (
            '{"selections": [{"conditions": {"SeriesDescription": "(unclosed"}}]}',
            "not a valid regular expression",
        ),
        (
            '{"selections": [{"conditions": {"ImageOrientationPatient": "Oblique"}}]}',
            "Axial, Coronal, Sagittal",
        ),
        ('{"selections": [{"conditions": {"Modality": true}}]}', "unsupported condition True"),
        ('{"selections": [{"conditions": {"ImageType": ["A", 2, "B"]}}]}', "unsupported condition"),
        ('{"selections": [{"conditions": {}}]}', "at least one condition"),
        ('{"selections": []}', "at least one selection"),
        ('{"selections": [{"condition": {"Modality": "CT"}}]}', "selections.0.condition"),
        ('{"selections": [', "Invalid JSON"),
    ],
)
@pytest.mark.requirement("SRS-002", "SRS-014")
def test_malformed_rules_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(SelectionRulesError) as caught:
        SelectionRules.from_json(text)
    assert fragment in caught.value.message
    assert caught.value.exit_code == 78  # EX_CONFIG


@pytest.mark.requirement("SRS-002")
def test_rules_from_parsed_json() -> None:
    data = json.loads(SDK_EXAMPLE)
    assert SelectionRules.from_data(data) == SelectionRules.from_json(SDK_EXAMPLE)
    data["selections"][1]["conditions"]["SliceThickness"] = [1, "~"]
    with pytest.raises(SelectionRulesError, match=r"selections\.1\.conditions.*'~'"):
        SelectionRules.from_data(data)


@pytest.mark.requirement("SRS-002", "SRS-014")
def test_rules_file_missing(tmp_path: Path) -> None:
    with pytest.raises(SelectionRulesError, match="cannot read selection rules file"):
        SelectionRules.from_file(tmp_path / "absent.json")
