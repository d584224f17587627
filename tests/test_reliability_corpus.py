"""The checked-in corpus of nasty files (tests/corpus/) through the gateway and the MAP CLI.

``tests/corpus/manifest.json`` says, per case, the C-STORE status and reason each file
gets, the outcome of its study's job, and the exit code of ``python -m map_app`` on the
case folder (``operators/errors.py``). Instance-level defects share the good study, so
"a good study mixed with them is still processed" is checked on the way.
"""

from __future__ import annotations

import contextlib
import filecmp
import io
import json
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, _config

from map_app.__main__ import main as map_main
from map_app.pipeline import Pipeline
from service.app import Service
from tests.peers import require_executable
from tests.service_support import (
    CT_IMAGE,
    MODELS,
    jobs_of,
    metric,
    settings_for,
    wait_finished,
)

CORPUS = Path(__file__).resolve().parent / "corpus"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
CASES: dict[str, Any] = MANIFEST["cases"]
PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


@pytest.mark.requirement("SRS-072")
def test_corpus_is_small_and_what_its_generator_writes(tmp_path: Path) -> None:
    require_executable("dcmconv")
    from tests.corpus.generate import main as generate

    assert generate(["--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "manifest.json").read_text()) == MANIFEST
    for name in CASES:
        files = sorted(p.name for p in (CORPUS / name).iterdir())
        assert files == sorted(p.name for p in (tmp_path / name).iterdir()), name
        _, mismatch, errors = filecmp.cmpfiles(CORPUS / name, tmp_path / name, files,
                                                   shallow=False)  # fmt: skip
        assert (mismatch, errors) == ([], []), name
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    assert total < 2 * 2**20


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = settings_for(tmp_path_factory.mktemp("corpus") / "var",
                            max_instance_bytes=MANIFEST["max_instance_bytes"])  # fmt: skip
    with Service(settings, pipeline=Pipeline(MODELS)) as running:
        yield running


def _send_all(port: int) -> dict[str, tuple[str, str]]:
    """Every corpus file, bytes as they are (chunked), on one association: file -> status."""
    ae = AE(ae_title="CORPUS")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
                   DeflatedExplicitVRLittleEndian):  # fmt: skip
        ae.add_requested_context(CT_IMAGE, syntax)
    ae.add_requested_context(PDF_STORAGE, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="MINIVESS")
    assert assoc.is_established
    rejected = {str(cx.abstract_syntax) for cx in assoc.rejected_contexts}
    answers: dict[str, tuple[str, str]] = {}
    previous, _config.STORE_SEND_CHUNKED_DATASET = _config.STORE_SEND_CHUNKED_DATASET, True
    try:
        for case in CASES.values():
            for name in case["files"]:
                path = CORPUS / name
                sop_class = str(pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID)
                if sop_class in rejected:  # PS3.8 9.3.3.2: refused at association time
                    answers[name] = ("context-rejected", "abstract-syntax-not-supported")
                    continue
                status = assoc.send_c_store(path)
                answers[name] = (f"0x{int(status.Status):04X}", str(status.get("ErrorComment", "")))
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
        assoc.release()
    return answers


@pytest.mark.requirement("SRS-072")
def test_corpus_through_the_gateway(service: Service) -> None:
    registry = service.metrics.registry
    answers = _send_all(service.gateway.port)
    expected_reasons: Counter[str] = Counter()
    for name, case in CASES.items():
        for path, expected in case["files"].items():
            status, comment = answers[path]
            assert status == expected["status"], (name, path, comment)
            if status not in ("0x0000", "context-rejected"):
                assert comment, (name, path)  # PS3.7 C.4: a refusal says why
                expected_reasons[expected["reason"]] += 1
    for reason, count in expected_reasons.items():
        labels = {"interface": "dimse", "reason": reason}
        assert metric(registry, "minivess_instances_rejected_total", **labels) == count, reason
    for name, case in CASES.items():
        if case["job"] is None:
            continue
        study = str(pydicom.dcmread(CORPUS / next(iter(case["files"])),
                                    stop_before_pixels=True).StudyInstanceUID)  # fmt: skip
        job = wait_finished(service.journal, study, timeout=120)
        assert len(jobs_of(service.journal, study)) == 1, name
        assert job.state == case["job"]["state"], (name, job.error)
        if job.state == "failed":
            assert job.error_reason == case["job"]["error_reason"], (name, job.error)
            continue
        # The good study kept exactly its good instances; every series got its results.
        assert job.instances == case["job"]["instances"], name
        assert len(job.outputs) == 3 * case["job"]["series_done"], name
    assert service.gateway.ae.active_associations == []  # nothing left hanging


def _cli(case_dir: Path, out: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = map_main(["-i", str(case_dir), "-o", str(out), "-m", str(MODELS)])
    return code, err.getvalue()


@pytest.mark.requirement("SRS-072")
@pytest.mark.parametrize("name", sorted(CASES))
def test_corpus_case_through_the_map_cli(name: str, tmp_path: Path) -> None:
    code, err = _cli(CORPUS / name, tmp_path / "out")
    expected = CASES[name]["cli"]
    assert code == expected["exit"], err
    if code:
        assert f"error [{expected['reason']}]" in err and "Traceback" not in err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["status"] == ("done" if code == 0 else "failed")


@pytest.mark.requirement("SRS-072")
def test_corpus_mixed_with_good_studies_through_the_map_cli(tmp_path: Path) -> None:
    """Every case in one input folder: the good series are processed, each bad one fails
    or is skipped with its own reason, and the run still exits 0 (partial)."""
    mixed = tmp_path / "in"
    for name in CASES:
        shutil.copytree(CORPUS / name, mixed / name)
    code, err = _cli(mixed, tmp_path / "out")
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["status"] == "partial"
    done = [s for s in report["series"] if s["status"] == "done"]
    good = [case["job"]["series_done"] for case in CASES.values()
            if case["job"] and case["job"]["state"] == "done"]  # fmt: skip
    assert len(done) == sum(good)
    reasons = Counter(s["error_reason"] for s in report["series"] if s["status"] == "failed")
    expected = Counter(case["cli"]["reason"] for case in CASES.values()
                       if case["cli"]["exit"] in (12, 13, 14))  # fmt: skip
    assert reasons == expected
    skipped = [Path(s["path"]).parent.name for s in report["skipped_inputs"]]
    assert skipped == ["truncated_file"]
