"""Service parts without peers: settings, journal, spool, instance checks, export timing."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from service.__main__ import main as service_main
from service.export import Exporter
from service.ingest import check_instance
from service.journal import Journal
from service.observability.metrics import ApplianceMetrics
from service.settings import SettingsError, load_settings
from service.spool import Spool, is_uid
from service.storage_status import CANNOT_UNDERSTAND, DATASET_MISMATCH
from tests.service_support import make_study, settings_for, truncated_copy

STUDY = "1.2.3.4"


# ------------------------------------------------------------------------- settings


def test_settings_defaults_file_env_precedence(tmp_path: Path) -> None:
    defaults = load_settings(environ={})
    assert (defaults.ae_title, defaults.dicom_port, defaults.http_port) == ("MINIVESS", 11112, 3000)
    assert defaults.quiet_period_s == 10 and defaults.spool_dir == Path("var/spool")
    toml = tmp_path / "service.toml"
    toml.write_text(
        'ae_title = "FROMFILE"\ndicom_port = 104\n'
        '[[export_destinations]]\nhost = "pacs"\nport = 104\nae_title = "PACS"\n'
    )
    env = {
        "MINIVESS_SERVICE_CONFIG": str(toml),
        "MINIVESS_DICOM_PORT": "11113",
        "MINIVESS_ALLOWLIST": '[{"ae_title": "CT1", "ip": "10.0.0.0/24"}]',
        "MINIVESS_API_TOKEN": "s3cret",
        "MINIVESS_OVERLAP": "0.5",  # a pipeline setting: not ours, ignored here
    }
    settings = load_settings(environ=env)
    assert (settings.ae_title, settings.dicom_port) == ("FROMFILE", 11113)
    assert settings.export_destinations[0].name == "PACS@pacs:104"
    assert settings.allowlist[0].admits("CT1", "10.0.0.9")
    assert not settings.allowlist[0].admits("CT1", "10.0.1.9")
    assert not settings.allowlist[0].admits("CT2", "10.0.0.9")
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "s3cret"
    assert "s3cret" not in settings.model_dump_json()
    as_json = tmp_path / "service.json"
    as_json.write_text(json.dumps({"quiet_period_s": 0.5}))
    assert load_settings(as_json, environ={}).quiet_period_s == 0.5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MINIVESS_AE_TITLE": "WAY_TOO_LONG_AE_TITLE"}, "ae_title"),
        ({"MINIVESS_DICOM_PORT": "http"}, "dicom_port"),
        ({"MINIVESS_EXPORT_DESTINATIONS": "[{"}, "must be JSON"),
        ({"MINIVESS_ALLOWLIST": '[{"ae_title": "X", "ip": "not-an-ip"}]'}, "allowlist"),
        ({"MINIVESS_SERVICE_CONFIG": "/nonexistent.json"}, "cannot read"),
    ],
)
def test_bad_settings_are_reported(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(environ=env)


# -------------------------------------------------------------------------- journal


def to_exporting(journal: Journal, job_id: str, due: float | None = None) -> None:
    """Take a ``received`` or ``queued`` job the legal way to ``exporting``."""
    journal.queue_quiet_jobs(cutoff=float("inf"))
    claimed = journal.claim_next_queued()
    assert claimed is not None and claimed.job_id == job_id
    journal.mark_exporting(job_id, Path("/out"), ["/x.dcm"], due=due)


@pytest.mark.requirement("SRS-043")
def test_journal_lifecycle_and_resume(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    first = journal.register_instance(STUDY, "1.1", tmp_path / "a", 10, now=100.0)
    second = journal.register_instance(STUDY, "1.2", tmp_path / "b", 10, now=101.0)
    again = journal.register_instance(STUDY, "1.1", tmp_path / "a", 10, now=102.0)
    assert first.new_job and not second.new_job and first.job_id == second.job_id
    assert again.duplicate and again.job_id is None
    job_id = first.job_id or ""
    job = journal.get(job_id)
    assert job is not None and job.instances == 2 and job.last_received_at == 102.0
    assert journal.queue_quiet_jobs(cutoff=101.5) == []  # the duplicate kept it open
    assert [j.job_id for j in journal.queue_quiet_jobs(cutoff=102.0)] == [job_id]
    claimed = journal.claim_next_queued()
    assert claimed is not None and (claimed.state, claimed.attempts) == ("processing", 1)
    # A new instance of the study while it is processed opens a second job.
    later = journal.register_instance(STUDY, "1.3", tmp_path / "c", 10, now=103.0)
    assert later.new_job and later.job_id != job_id
    journal.close()

    reopened = Journal(tmp_path / "j.sqlite3")  # "restart", long after the last instance
    resumed = {j.job_id: j.state for j in reopened.resume(now=500.0)}
    assert resumed == {job_id: "queued", later.job_id: "received"}
    # The study still receiving restarts its quiet period: it is not complete yet.
    assert reopened.queue_quiet_jobs(cutoff=499.0) == []
    assert [j.job_id for j in reopened.queue_quiet_jobs(cutoff=500.0)] == [later.job_id]
    claimed = reopened.claim_next_queued()  # the first job (it fell quiet first)
    assert claimed is not None and claimed.job_id == job_id
    reopened.mark_failed(job_id, "x", "x", tmp_path / "out")
    assert reopened.release_study(STUDY) == []  # the second job still needs the files
    to_exporting(reopened, later.job_id or "")
    reopened.mark_done(later.job_id or "", ["A@h:1"])
    assert sorted(p.name for p in reopened.release_study(STUDY)) == ["a", "b", "c"]
    assert not reopened.is_known("1.1")  # a resend after release is processed anew
    failed = reopened.get(job_id)
    assert failed is not None and failed.finished_at is not None


@pytest.mark.requirement("SRS-044")
def test_journal_export_scheduling_and_retry(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    job_id = journal.register_instance(STUDY, "1.1", tmp_path / "a", 1).job_id or ""
    with pytest.raises(ValueError, match="nothing to re-export"):
        journal.retry_export(job_id)
    to_exporting(journal, job_id, due=50.0)
    assert journal.next_export(now=40.0) == (None, 50.0)
    due, _ = journal.next_export(now=60.0)
    assert due is not None and due.job_id == job_id
    journal.retry_export_later(job_id, 3, 70.0, ["A@h:1"], "B@h:2: refused")
    journal.mark_dead_letter(job_id, ["A@h:1"], "B@h:2: refused")
    job = journal.retry_export(job_id)
    assert (job.state, job.export_attempts, job.delivered, job.finished_at) == (
        "exporting", 0, [], None
    )  # fmt: skip
    with pytest.raises(KeyError):
        journal.retry_export("nope")


@pytest.mark.requirement("SRS-044")
def test_cli_lists_and_retriggers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = settings_for(tmp_path / "var")
    config = tmp_path / "s.json"
    config.write_text(settings.model_dump_json())
    journal = Journal(settings.journal_path)
    job_id = journal.register_instance(STUDY, "1.1", tmp_path / "a", 1).job_id or ""
    to_exporting(journal, job_id)
    journal.mark_dead_letter(job_id, [], "PACS@h:1: refused")
    assert service_main(["--config", str(config), "jobs"]) == 0
    assert job_id in capsys.readouterr().out
    assert service_main(["--config", str(config), "jobs", "--state", "done", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert service_main(["--config", str(config), "retry-export", "nope"]) == 3
    assert service_main(["--config", str(config), "retry-export", job_id]) == 0
    assert service_main(["--config", str(config), "show", job_id]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["state"] == "exporting"
    assert service_main(["--config", str(tmp_path / "missing.json"), "jobs"]) == 78  # EX_CONFIG


# ---------------------------------------------------------------------------- spool


@pytest.mark.requirement("SRS-042")
def test_spool_layout_scan_and_hostile_uids(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    path = spool.store(STUDY, "1.2.3.4.5", b"DICM" * 10)
    assert path == tmp_path / "spool" / STUDY / "1.2.3.4.5.dcm" and path.read_bytes()[:4] == b"DICM"
    spool.store(STUDY, "1.2.3.4.5", b"DICM" * 10)  # the same instance again: same file
    assert spool.bytes_held == 40
    (spool.tmp / "dead.part").write_bytes(b"half")  # a write cut short by a crash
    found = list(Spool(tmp_path / "spool").scan())
    assert [(f.study_uid, f.sop_uid, f.size) for f in found] == [(STUDY, "1.2.3.4.5", 40)]
    assert not list(spool.tmp.iterdir())
    for hostile in ("../etc", "1.2/../3", "", "1." + "2" * 70):
        assert not is_uid(hostile)
        with pytest.raises(ValueError):
            spool.path_of(STUDY, hostile)
    spool.remove([path])
    assert not (tmp_path / "spool" / STUDY).exists() and spool.bytes_held == 0


# ------------------------------------------------------------------- instance checks


def test_check_instance_statuses(tmp_path: Path) -> None:
    study = make_study(tmp_path / "s", seed=23)
    good = study.files[0].read_bytes()
    ds, refusal = check_instance(good)
    assert refusal is None and ds is not None
    sop_class, sop = str(ds.SOPClassUID), str(ds.SOPInstanceUID)
    assert check_instance(good, sop_class, "1.2.3")[1].reason == "sop-instance-mismatch"  # type: ignore[union-attr]
    assert check_instance(good, "1.2.840.10008.5.1.4.1.1.4", sop)[1].status == DATASET_MISMATCH  # type: ignore[union-attr]
    assert check_instance(b"\0" * 128 + b"DICM" + b"junk")[1].status == CANNOT_UNDERSTAND  # type: ignore[union-attr]
    truncated_copy(study.files[0], tmp_path / "t.dcm")
    refusal = check_instance((tmp_path / "t.dcm").read_bytes())[1]
    assert refusal is not None and (refusal.status, refusal.reason) == (
        DATASET_MISMATCH, "pixel-data-truncated"
    )  # fmt: skip
    no_study = pydicom.dcmread(study.files[1])
    del no_study.StudyInstanceUID
    no_study.save_as(tmp_path / "n.dcm", enforce_file_format=True)
    refusal = check_instance((tmp_path / "n.dcm").read_bytes())[1]
    assert refusal is not None and refusal.reason == "invalid-uid"
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


# --------------------------------------------------------------------------- export


@pytest.mark.requirement("SRS-044")
def test_export_backoff_doubles_up_to_its_cap(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "var", export_backoff_s=2, export_max_backoff_s=10)
    exporter = Exporter(
        settings, Journal(settings.journal_path), Spool(settings.spool_dir), ApplianceMetrics()
    )
    assert [exporter.backoff(n) for n in (1, 2, 3, 4, 5)] == [2, 4, 8, 10, 10]
