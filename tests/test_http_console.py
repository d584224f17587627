"""The web console in a real browser: Debian's headless chromium against the service on
127.0.0.1, after a real study went through the pipeline.

The module's service has bearer auth on and one export destination where nothing listens,
with no retries, so the uploaded study ends ``dead_letter`` with its results written:
the console must list the job (stage timings, uncertainty score, review flag) and the
dead letter, picture the results on the study page and re-trigger the export. Every page
is screenshotted (``$CONSOLE_SCREENSHOTS``, else the test's tmp_path) and any
browser console error fails the test. Without a session nothing is shown or changed.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from map_app.pipeline import Pipeline
from operators.run_report import RunReport
from service.app import Service
from service.journal import Job
from tests.browser_support import (
    console_errors,
    full_page_screenshot,
    headless_chromium,
    screenshot_folder,
)
from tests.peers import free_port
from tests.service_support import (  # pipeline_fixture: the module's pipeline fixture
    make_study,
    pipeline_fixture,  # noqa: F401
    settings_for,
    wait_for,
)

pytestmark = [pytest.mark.peer, pytest.mark.slow]

TOKEN = "console-test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, pipeline: Pipeline) -> Iterator[Service]:
    nowhere = {"host": "127.0.0.1", "port": free_port(), "ae_title": "NOWHERE"}
    settings = settings_for(
        tmp_path_factory.mktemp("console") / "var",
        http_port=free_port(),
        api_token=TOKEN,
        export_destinations=[nowhere],
        export_retries=0,
        export_timeout_s=2,
    )
    with Service(settings, pipeline=pipeline, http=True) as running:
        yield running


def base(service: Service) -> str:
    assert service.http is not None
    return f"http://127.0.0.1:{service.http.port}"


@pytest.fixture(scope="module")
def dead_job(service: Service, tmp_path_factory: pytest.TempPathFactory) -> Job:
    """A study uploaded over the API, processed, its export dead-lettered."""
    study = make_study(tmp_path_factory.mktemp("study"), seed=71)
    files = [("files", (p.name, p.read_bytes(), "application/dicom")) for p in study.files]
    response = requests.post(f"{base(service)}/v1/studies", files=files, headers=AUTH,
                             timeout=60)  # fmt: skip
    assert response.status_code == 202, response.text
    job_id = response.json()["jobs"][0]["job_id"]

    def dead() -> Job | None:
        job = service.journal.get(job_id)
        assert job is not None and job.state != "failed", job
        return job if job.state == "dead_letter" else None

    job: Job = wait_for(dead, 120, "the job's export to be dead-lettered")
    assert job.outputs, "a dead-lettered job keeps its results"
    return job


def report_of(job: Job) -> RunReport:
    return RunReport.model_validate_json((Path(str(job.output_dir)) / "report.json").read_bytes())


def signed_in_cookies(service: Service) -> dict[str, str]:
    session = requests.Session()
    answer = session.post(f"{base(service)}/console/login", data={"token": TOKEN},
                          allow_redirects=False, timeout=10)  # fmt: skip
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
    return session.cookies.get_dict()


@pytest.mark.requirement("SRS-045", "SRS-047", "SRS-086")
def test_console_refuses_whoever_is_not_signed_in(service: Service, dead_job: Job) -> None:
    root, job = base(service), dead_job.job_id
    for page in ("/", f"/console/jobs/{job}"):  # pages: to the sign-in form, nothing shown
        answer = requests.get(root + page, allow_redirects=False, timeout=10)
        assert (answer.status_code, answer.headers["location"]) == (303, "/console/login")
        assert job not in answer.text
    forged = {"minivess_console": "99999999999.0123456789abcdef"}
    assert requests.get(root + "/", cookies=forged, allow_redirects=False,
                        timeout=10).status_code == 303  # fmt: skip
    assert (
        requests.get(root + "/", headers=AUTH, allow_redirects=False, timeout=10).status_code == 303
    )  # a page load cannot carry the header
    for thing in (f"/console/jobs/{job}/series/0/mip.png", f"/console/jobs/{job}/results.zip",
                  f"/console/jobs/{job}/files/report.json"):  # fmt: skip
        answer = requests.get(root + thing, timeout=10)
        assert answer.status_code == 401 and answer.json()["type"] == "/problems/unauthorized"
    resend = requests.post(f"{root}/console/jobs/{job}/retry-export", timeout=10)
    assert resend.status_code == 401
    wrong = requests.post(f"{root}/console/login", data={"token": "guess"},
                          allow_redirects=False, timeout=10)  # fmt: skip
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    assert "not the appliance&#x27;s API token" in wrong.text  # escaped, as every value
    cookies = signed_in_cookies(service)
    no_csrf = requests.post(f"{root}/console/jobs/{job}/retry-export", cookies=cookies,
                            allow_redirects=False, timeout=10)  # fmt: skip
    assert no_csrf.status_code == 403  # a signed-in browser tricked into posting a form
    assert service.journal.get(job).state == "dead_letter"  # type: ignore[union-attr]


@pytest.mark.requirement("SRS-045", "SRS-047", "SRS-086")
def test_console_in_chromium_shows_the_job_its_pictures_and_resends_the_export(
    service: Service, dead_job: Job, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    shots = screenshot_folder(tmp_path / "screenshots")
    report = report_of(dead_job)
    (series,) = report.series
    flag = "REVIEW" if series.out_of_distribution else "in distribution"
    with headless_chromium(tmp_path / "profile") as browser:
        browser.get(base(service) + "/")
        assert browser.current_url.endswith("/console/login")
        assert "Sign in" in browser.title
        full_page_screenshot(browser, shots / "console-sign-in.png")
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.CSS_SELECTOR, "form[action='/console/login'] button").click()
        wait_for(lambda: browser.current_url == base(service) + "/", 20, "the jobs page")

        row = browser.find_element(By.CSS_SELECTOR, f"tr.job[data-job='{dead_job.job_id}']")
        assert "dead letter" in row.text and flag in row.text
        assert f"{series.uncertainty_score:.4f}" in row.text and "inference" in row.text
        assert "ready" in browser.find_element(By.ID, "health").text
        dead = browser.find_element(By.ID, "dead-letters").text
        assert dead_job.job_id in dead and "Re-send export" in dead
        assert "NOWHERE" in dead or "association" in dead  # the export's own error
        full_page_screenshot(browser, shots / "console-jobs.png")

        # Followed by address, not clicked: the jobs page refreshes itself every 15 s.
        browser.get(str(row.find_element(By.LINK_TEXT, dead_job.job_id).get_attribute("href")))
        pictures = browser.find_elements(By.CSS_SELECTOR, "img.picture")
        names = [p.get_attribute("data-picture") for p in pictures]
        assert names[0] == "mip" and len(names) >= 2, names
        loaded = """const i = arguments[0]; return i.complete ? i.naturalWidth : -1;"""
        for picture in pictures:
            width = wait_for(lambda p=picture: browser.execute_script(loaded, p) != -1 and
                             browser.execute_script(loaded, p), 30, "a picture")  # fmt: skip
            assert width > 0, picture.get_attribute("src")
        assert "inference" in browser.find_element(By.ID, "timings").text
        outputs = browser.find_element(By.ID, "outputs").text
        assert "vessel-seg.dcm" in outputs and "report.json" in outputs
        assert flag in browser.find_element(By.ID, "job").text
        full_page_screenshot(browser, shots / "console-study.png")

        cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
        src = str(pictures[0].get_attribute("src"))
        png = requests.get(src, cookies=cookies, timeout=30)
        assert png.headers["content-type"] == "image/png" and png.content[:8] == PNG_SIGNATURE
        assert Image.open(io.BytesIO(png.content)).size[0] == int(
            browser.execute_script("return arguments[0].naturalWidth", pictures[0])
        )
        seg_link = browser.find_element(By.PARTIAL_LINK_TEXT, "vessel-seg.dcm")
        seg = requests.get(str(seg_link.get_attribute("href")), cookies=cookies, timeout=30)
        assert seg.content[128:132] == b"DICM"

        before = service.journal.get(dead_job.job_id)
        assert before is not None and before.finished_at is not None
        browser.find_element(By.CSS_SELECTOR, "button.resend").click()
        # The click posts a form; the page with the notice may not have loaded yet.
        notices = wait_for(
            lambda: browser.find_elements(By.CSS_SELECTOR, ".notice"), 20, "the re-send notice"
        )
        notice = notices[0].text
        assert "Export re-triggered" in notice

        def tried_again() -> Any:
            job = service.journal.get(dead_job.job_id)
            return job and job.state == "dead_letter" and job.finished_at > before.finished_at

        wait_for(tried_again, 30, "the re-sent export to be tried (and dead-lettered again)")
        errors = console_errors(browser)
    assert not errors, errors
    for name in ("console-sign-in.png", "console-jobs.png", "console-study.png"):
        with Image.open(shots / name) as shot:
            assert shot.format == "PNG" and shot.size[0] > 0


@pytest.mark.requirement("SRS-045", "SRS-072", "SRS-086")
def test_console_answers_odd_requests_with_specific_errors(service: Service, dead_job: Job) -> None:
    """Signed in, unknown jobs, series, pictures and files (a path climbing out of the
    job's folder included) are 404s naming what is missing, never a server error."""
    root, job, cookies = base(service), dead_job.job_id, signed_in_cookies(service)
    home = requests.get(root + "/", cookies=cookies, timeout=30)
    assert home.status_code == 200 and home.headers["content-security-policy"].startswith(
        "default-src 'none'"
    )
    (csrf,) = set(re.findall(r'name="csrf" value="([0-9a-f]{64})"', home.text))
    unknown = requests.get(f"{root}/console/jobs/no-such-job", cookies=cookies, timeout=10)
    assert unknown.status_code == 404 and "no job no-such-job" in unknown.text
    for thing, detail in (("series/7/mip.png", "has no series 8"),
                          ("series/0/nothing.png", "no picture nothing"),
                          ("files/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "has no result ../../../etc"),
                          ("files/vessel-seg.dcm", "has no result vessel-seg.dcm")):  # fmt: skip
        answer = requests.get(f"{root}/console/jobs/{job}/{thing}", cookies=cookies, timeout=30)
        assert answer.status_code == 404 and detail in answer.json()["detail"], answer.text
    resend = requests.post(f"{root}/console/jobs/no-such-job/retry-export", cookies=cookies,
                           data={"csrf": csrf}, allow_redirects=False, timeout=10)  # fmt: skip
    assert resend.status_code == 404 and resend.json()["type"] == "/problems/job-not-found"
    out = requests.post(f"{root}/console/logout", cookies=cookies, data={"csrf": csrf},
                        allow_redirects=False, timeout=10)  # fmt: skip
    assert out.status_code == 303 and 'minivess_console=""' in out.headers["set-cookie"]
