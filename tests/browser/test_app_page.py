"""The app page in headless Chromium, opened the way Bitrix24 opens it.

The sandbox's portal page (`/portal/app`, on its own origin like Bitrix24) POSTs the form it sends
(AUTH_ID, REFRESH_ID, member_id, PLACEMENT=DEFAULT; query DOMAIN, PROTOCOL, LANG, APP_SID) into
an iframe. In the frame the admin changes the policy, previews, converts every active lead and
watches the job reach 100% through the page's own polling, then reads the report. Every host but
127.0.0.1 is unresolvable for the browser, so the page is shown to work without the BX24 library.
Screenshots go to $B24APP_ARTIFACTS or artifacts/ at the repository root.

Debian's chromium and chromium-driver are used as installed; nothing is downloaded. Without them
the test is skipped, except under CI=true, where it fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from b24app.jobs import Jobs
from handlers import create_app
from handlers.devserver import ThreadedServer
from sandbox import Sandbox
from tests.handlers.page_support import page_settings
from tests.rest.sandbox_app import Installed

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[2]
WAIT = 60  # seconds an element may take to appear (a ceiling, not a measurement)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires the browser test to run", pytrace=False)
    pytest.skip(f"{reason} (apt-get install chromium chromium-driver to run it)")


def artifacts_dir() -> Path:
    """Where screenshots go: $B24APP_ARTIFACTS, else artifacts/ at the repository root."""
    path = Path(os.environ.get("B24APP_ARTIFACTS") or ROOT / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def snapshot(browser: Any, path: Path) -> None:
    """Save the portal-with-frame view, both scrolled to the top, and go back into the frame."""
    browser.execute_script("window.scrollTo(0, 0)")
    browser.switch_to.default_content()
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(path))
    browser.switch_to.frame("app-frame")


class HeldJobs:
    """The app's Jobs, run in-process in a thread that waits for `release`: the job page loads
    while the job is still pending, so its polling script is what brings the report."""

    def __init__(self, jobs: Jobs) -> None:
        self._jobs = jobs
        self.release = threading.Event()
        self.threads: list[threading.Thread] = []

    def run_job(self, member_id: str, job_id: int) -> None:
        def later() -> None:
            if self.release.wait(WAIT):
                self._jobs.run_job(member_id, job_id)

        thread = threading.Thread(target=later, daemon=True)
        self.threads.append(thread)
        thread.start()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._jobs, name)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        _unavailable(f"{CHROMIUM} or {CHROMEDRIVER} is missing")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        _unavailable(f"selenium is not installed ({exc})")
    profile = tempfile.mkdtemp(prefix="b24app-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1400",
        f"--user-data-dir={profile}",
        # Only the loopback exists for this browser: no CDN, no BX24 library, no telemetry.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_an_admin_changes_the_policy_converts_to_100_percent_and_reads_the_report(
    browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, WAIT)
    shots = artifacts_dir()
    with Sandbox(seed_leads=10, seed=11, plan="fast") as portal:
        installed = Installed(portal, f"sqlite:///{tmp_path / 'app.db'}")
        settings = page_settings(portal, installed)
        jobs = HeldJobs(Jobs(settings, immediate=True))
        app = create_app(settings, jobs=jobs)  # type: ignore[arg-type]
        ctx = app.extensions["b24app"]
        with ThreadedServer(app) as server:
            portal.page_url = f"{server.url}/app"  # the app's registered handler path
            browser.get(f"{portal.base_url}/portal/app?user=1")
            wait.until(ec.frame_to_be_available_and_switch_to_it("app-frame"))
            wait.until(ec.presence_of_element_located((By.ID, "policy-form")))
            active = int(browser.find_element(By.ID, "active-total").text)
            assert active > 0
            assert "Classic CRM" in browser.find_element(By.ID, "mode-now").text
            assert browser.find_element(By.ID, "who").text.startswith("User #1")

            # The policy: contact and company, the "Contract renewal" pipeline, open
            # activities moved to the deal, clients matched by phone.
            browser.find_element(By.CSS_SELECTOR, 'input[name="client"][value="both"]').click()
            Select(browser.find_element(By.ID, "pipeline")).select_by_value("7")
            browser.find_element(By.CSS_SELECTOR, 'input[name="activities"][value="move"]').click()
            browser.find_element(
                By.CSS_SELECTOR, 'input[name="match_clients"][value="phone"]'
            ).click()
            browser.find_element(By.ID, "save-policy").click()
            wait.until(ec.presence_of_element_located((By.ID, "policy-saved")))
            stored = ctx.portal_settings.policy_data(installed.member_id)
            assert (stored["client"], stored["pipeline"], stored["activities"]) == (
                "both",
                7,
                "move",
            )
            assert stored["match_clients"] == ["phone"]
            snapshot(browser, shots / "app_page_overview.png")

            # The preview lists every active lead under the policy on screen, with its numbers;
            # nothing is created yet.
            browser.find_element(By.ID, "preview-button").click()
            table = wait.until(ec.presence_of_element_located((By.ID, "preview-table")))
            assert len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) == active
            assert "company, contact, deal" in table.text
            summary = browser.find_element(By.ID, "preview-summary").text
            assert f"{active} leads would be converted." in summary
            assert f"{active} deals created" in summary
            assert portal.stats()["counts"]["deal"] == 0

            # Confirm with the preview's numbers; the job page polls until the job is done.
            confirm = browser.find_element(By.ID, "convert-button")
            assert confirm.text == f"Convert {active} leads now"
            confirm.click()
            status = wait.until(ec.presence_of_element_located((By.ID, "job-status")))
            assert status.get_attribute("data-status") == "pending"
            assert browser.find_element(By.ID, "progress-percent").text == "0%"
            jobs.release.set()  # the worker takes the job; the page's polling follows it
            wait.until(ec.presence_of_element_located((By.ID, "report-table")))
            bar = browser.find_element(By.ID, "progress-bar")
            assert bar.get_attribute("aria-valuenow") == "100"
            assert browser.find_element(By.ID, "progress-percent").text == "100%"
            assert browser.find_element(By.ID, "job-status").get_attribute("data-status") == "done"
            assert browser.find_element(By.ID, "report-converted").text == str(active)
            assert browser.find_element(By.ID, "report-failed").text == "0"
            rows = browser.find_elements(By.CSS_SELECTOR, "#report-table tbody tr.converted")
            assert len(rows) == active
            summary = browser.find_element(By.ID, "job-summary").text
            assert f"{active} leads were converted." in summary
            lead_link = rows[0].find_element(By.CSS_SELECTOR, "td.lead a")
            assert "/crm/lead/details/" in lead_link.get_attribute("href")
            assert not lead_link.text.startswith("#")  # the lead's title
            snapshot(browser, shots / "app_page_report.png")

            csv_url = browser.find_element(By.ID, "csv-link").get_attribute("href")
            report = requests.get(csv_url, timeout=30)
            assert report.status_code == 200
            assert report.text.startswith("lead_id,status,deal_id,contact_id,company_id,error")
            assert report.text.count("\n") == active + 1
            assert browser.get_cookies() == []

        for thread in jobs.threads:
            thread.join(WAIT)
        counts = portal.stats()["counts"]
        assert counts["deal"] == active and counts["company"] >= 1
    assert (shots / "app_page_report.png").stat().st_size > 0
