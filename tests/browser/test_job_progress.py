"""The job page's live progress, read at three moments of a real job: before the worker takes it,
in the middle (the worker held between two batches) and at the end. At each moment the count,
the status word, the percentage and the bar say the same thing (issue 18: "31% · 0 of 3000
leads" was the page's script updating the bar but not the count or the status)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from b24app.jobs import Jobs
from handlers import create_app
from handlers.devserver import ThreadedServer
from sandbox import Sandbox
from tests.browser.test_app_page import WAIT, HeldJobs, artifacts_dir, browser  # noqa: F401 - the fixture
from tests.handlers.page_support import page_settings
from tests.rest.sandbox_app import Installed

pytestmark = pytest.mark.browser

# What the page shows, read in one go so that no poll lands between two reads.
READ = """
const bar = document.getElementById('progress-bar');
return {
  status: document.getElementById('job-status').dataset.status,
  status_text: document.getElementById('job-status').textContent.trim(),
  percent: document.getElementById('progress-percent').textContent.trim(),
  count: document.getElementById('progress-count').textContent.trim(),
  bar: bar.getAttribute('aria-valuenow'),
  width: bar.style.width,
  waiting: !!document.getElementById('job-waiting'),
  eta: document.getElementById('progress-eta').textContent.trim(),
  eta_before: getComputedStyle(document.getElementById('progress-eta'), '::before').content,
};
"""
COUNT = re.compile(r"^(\d+) of (\d+) leads?$")
SO_FAR = re.compile(r"^(\d+) leads? so far$")  # before the run has counted the active leads


class Gate:
    """Holds the job's worker before its first batch after `ready()` says so, until `open`."""

    def __init__(self, ready: Callable[[], bool]) -> None:
        self.ready = ready
        self.held = threading.Event()
        self.open = threading.Event()

    def wrap(self, client: Any) -> Any:
        batch = client.batch

        def gated(*args: Any, **kwargs: Any) -> Any:
            if not self.held.is_set() and self.ready():
                self.held.set()
                self.open.wait(WAIT)
            return batch(*args, **kwargs)

        client.batch = gated
        return client


def _shown(driver: Any) -> dict[str, Any]:
    return dict(driver.execute_script(READ))


def _consistent(shown: dict[str, Any]) -> tuple[int, int | None]:
    """The numbers agree with each other; (done, total or None while it is not known)."""
    percent = int(shown["percent"].rstrip("%"))
    assert shown["bar"] == str(percent), shown
    unknown = SO_FAR.match(shown["count"])
    if unknown:
        assert percent == 0 and shown["status"] == "pending", shown
        return int(unknown[1]), None
    found = COUNT.match(shown["count"])
    assert found, shown
    done, total = int(found[1]), int(found[2])
    assert shown["bar"] == str(percent), shown
    assert shown["width"] == f"{percent}%", shown
    if shown["status"] == "done":
        assert (percent, done) == (100, total), shown
    else:
        assert percent == min(99, done * 100 // total), shown
    return done, total


def test_the_count_status_and_bar_agree_before_during_and_after_a_job(
    browser: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT)
    with Sandbox(seed_leads=120, seed=5, plan="fast") as portal:
        installed = Installed(portal, f"sqlite:///{tmp_path / 'app.db'}")
        settings = page_settings(portal, installed)
        inner = Jobs(settings, immediate=True)

        def progressed() -> bool:
            journal = inner.services.journal(installed.member_id)
            latest = journal.jobs(1)
            return bool(latest) and journal.status_counts(latest[0].id).get("converted", 0) > 0

        gate = Gate(progressed)
        make_client = inner.services.client
        inner.services.client = lambda member_id: gate.wrap(make_client(member_id))  # type: ignore[method-assign]
        jobs = HeldJobs(inner)
        app = create_app(settings, jobs=jobs)  # type: ignore[arg-type]
        with ThreadedServer(app) as server:
            portal.page_url = f"{server.url}/app"
            browser.get(f"{portal.base_url}/portal/app?user=1")
            wait.until(ec.frame_to_be_available_and_switch_to_it("app-frame"))
            wait.until(ec.presence_of_element_located((By.ID, "policy-form")))
            active = int(browser.find_element(By.ID, "active-total").text)
            browser.find_element(By.ID, "preview-button").click()
            wait.until(ec.presence_of_element_located((By.ID, "convert-button"))).click()

            # 1. Queued: nothing done yet, and the page says so everywhere.
            wait.until(ec.presence_of_element_located((By.ID, "job-status")))
            first = _shown(browser)
            assert first["status"] == "pending"
            assert _consistent(first) in ((0, active), (0, None))

            # 2. In the middle: the worker is held between two batches.
            jobs.release.set()
            assert gate.held.wait(WAIT), "the job never converted a lead"
            wait.until(
                lambda b: _shown(b)["status"] == "running" and COUNT.match(_shown(b)["count"])
            )
            wait.until(lambda b: int(COUNT.match(_shown(b)["count"])[1]) > 0)
            middle = _shown(browser)
            done, total = _consistent(middle)
            assert middle["status"] == "running" and 0 < done < total == active, middle
            assert middle["status_text"] != first["status_text"]
            assert not middle["waiting"], "a running job still says it waits for a worker"
            if middle["eta"]:  # the time left reads as its own part of the line
                assert "·" in middle["eta_before"], middle
            browser.save_screenshot(str(artifacts_dir() / "job_progress_middle.png"))

            # 3. Done: every lead, 100%, the same words everywhere.
            gate.open.set()
            wait.until(ec.presence_of_element_located((By.ID, "report-table")))
            last = _shown(browser)
            assert last["status"] == "done"
            assert _consistent(last) == (active, active)
        for thread in jobs.threads:
            thread.join(WAIT)
