"""A real browser for the tests: Debian's headless chromium, driven by selenium.

Chromium is started offline-clean (no background networking, component updates, sync or
first-run pages: this machine has no network and the appliance must not need one), with
a fresh profile in the test's folder, and with its console log kept so a test can fail
on any error the page caused (a broken image, a refused stylesheet, a CSP violation).
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
OFFLINE_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-default-browser-check", "--disable-extensions",
)  # fmt: skip
WINDOW = (1400, 1000)
# A folder to keep the screenshots in. Not MINIVESS_*: the service refuses unknown
# settings in its namespace, and a test may start `python -m service` with this env.
SCREENSHOTS_ENV = "CONSOLE_SCREENSHOTS"


@contextmanager
def headless_chromium(profile: Path) -> Iterator[Any]:
    """A selenium driver of headless chromium with a fresh profile in ``profile``; skips
    the test where chromium or its driver is not installed (``make test`` installs both)."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip("chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*OFFLINE_FLAGS, f"--user-data-dir={profile}",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver's path is given, so Selenium Manager (which would download one) never runs.
    driver = webdriver.Chrome(service=DriverService(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver: Any) -> list[str]:
    """The browser console's errors since the last call (the log is drained on read)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot_folder(default: Path) -> Path:
    """Where screenshots go: ``$CONSOLE_SCREENSHOTS`` when set (e.g.
    var/console-screenshots, to keep them), else ``default`` (the test's tmp_path)."""
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def full_page_screenshot(driver: Any, path: Path) -> Path:
    """The whole page, beyond the window's height (DevTools' captureBeyondViewport), as PNG."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    return path
