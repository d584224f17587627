"""The site tools (airgap/): deploy.sh's audit entries chain with the service's, the SEG
check reads the media storage SOP class, the Python tools need only the standard library
and the shell scripts pass shellcheck.

What the bundle tests share: tests/bundle_support.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from airgap import sitectl
from compliance.audit import AuditLog
from compliance.audit.verify import verify_log
from tests.bundle_support import REPO, SITE_PYTHON

# ------------------------------------------------------------------------ audit log


@pytest.mark.requirement("SRS-077")
def test_site_audit_entries_chain_with_the_services_entries(tmp_path: Path) -> None:
    """deploy.sh's stdlib appender writes entries compliance.audit verifies, interleaved
    with entries the service writes (pydantic), torn last line included."""
    log = tmp_path / "audit" / "audit.jsonl"
    service = AuditLog(log, hmac_key=b"k" * 32)
    service.append(event_type="study", actor="gateway", resource="study:x", action="receive")
    entry = sitectl.append_audit(
        log, event_type="deploy", actor="deploy.sh", resource="release:3", action="verify",
        outcome="refused", details={"problem": "manifest altered"}, code_version="deploy.sh@1",
    )  # fmt: skip
    assert entry["sequence"] == 2
    with log.open("ab") as handle:
        handle.write(b'{"torn": ')  # a crash mid-write
    done = subprocess.run(
        [*SITE_PYTHON, str(REPO / "airgap/sitectl.py"), "audit", "--log", str(log),
         "--action", "install", "--outcome", "success", "--resource", "release:3",
         "--details", '{"image": "abc"}'],
        capture_output=True, text=True, check=False, cwd="/",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    service.append(event_type="study", actor="exporter", resource="study:x", action="export")
    report = verify_log(log)
    assert report.ok, report.findings
    assert report.entries == 4
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.endswith("}")]
    assert [(e["actor"], e["action"], e["outcome"]) for e in entries] == [
        ("gateway", "receive", "success"),
        ("deploy.sh", "verify", "refused"),
        ("deploy.sh", "install", "success"),
        ("exporter", "export", "success"),
    ]


def test_seg_check_reads_the_media_storage_sop_class(tmp_path: Path) -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian

    from synthetic.case import Modality, generate_case
    from synthetic.dicom_series import write_series

    write_series(generate_case(3, Modality.CT), tmp_path / "study")
    first = sorted((tmp_path / "study").iterdir())[0]
    assert sitectl.media_sop_class(first) == "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    assert sitectl.check_seg(tmp_path) == []
    import pydicom

    ds = pydicom.dcmread(first)
    ds.file_meta = FileMetaDataset(ds.file_meta)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = UID(sitectl.SEG_SOP_CLASS)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    (tmp_path / "out").mkdir()
    ds.save_as(tmp_path / "out" / "vessel-seg.dcm", enforce_file_format=True)
    assert sitectl.check_seg(tmp_path / "out") == [tmp_path / "out" / "vessel-seg.dcm"]
    (tmp_path / "out" / "vessel-seg.dcm").write_bytes(b"not dicom")
    assert sitectl.check_seg(tmp_path / "out") == []


def test_site_tools_need_only_the_standard_library() -> None:
    """Syntax for Python >= 3.8 and imports from the stdlib only (or each other)."""
    import ast

    site_tools = sorted((REPO / "airgap").glob("*.py"))
    stdlib = set(sys.stdlib_module_names) | {"airgap"} | {path.stem for path in site_tools}
    for path in site_tools:
        tree = ast.parse(path.read_text(), feature_version=(3, 8))
        for node in ast.walk(tree):
            names = (
                [alias.name for alias in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )  # fmt: skip
            for name in names:
                assert name.split(".")[0] in stdlib | {"__future__"}, f"{path.name}: {name}"


def test_deploy_scripts_pass_shellcheck() -> None:
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.fail("shellcheck not found: apt-get install shellcheck", pytrace=False)
    done = subprocess.run(
        [exe, str(REPO / "airgap/deploy.sh"), str(REPO / "airgap/health.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout
