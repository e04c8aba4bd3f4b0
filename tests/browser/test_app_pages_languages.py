"""Every page of the app in every language, as admin and as a plain user, in headless Chromium at
1000 px wide: no English outside the portal's own data, nothing wider than the window, and a
screenshot of each page in artifacts/pages/ (or $B24APP_ARTIFACTS/pages/).

The page is opened the way Bitrix24 opens it (the sandbox's portal page POSTs into an iframe);
the token it issues then opens each page in the top window, so the 1000 px are the page's own.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from handlers import i18n
from handlers.devserver import ThreadedServer
from sandbox import Sandbox
from tests.browser.test_app_page import WAIT, artifacts_dir, browser  # noqa: F401 - the fixture
from tests.handlers.page_support import make_page_app, seed_jobs
from tests.handlers.untranslated import english_left

pytestmark = pytest.mark.browser

WIDTH = 1000
ROLES = {"admin": 1, "user": 2}

# What a reader sees: text nodes and labelling attributes outside translate="no" (the portal's
# data), scripts and styles.
VISIBLE_TEXTS = """
const skip = 'script,style,noscript,title,[translate="no"]';
const texts = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  const text = node.textContent.trim();
  if (text && !node.parentElement.closest(skip)) { texts.push(text); }
}
for (const el of document.querySelectorAll('[placeholder],[aria-label],[title],[alt]')) {
  if (el.closest(skip)) { continue; }
  for (const name of ['placeholder', 'aria-label', 'title', 'alt']) {
    if (el.getAttribute(name)) { texts.push(el.getAttribute(name)); }
  }
}
return texts;
"""

# Elements reaching past the right edge of the window's content area (a vertical scrollbar
# takes its share), the page's own horizontal overflow, and the window's width.
OVERFLOW = """
const width = document.documentElement.clientWidth;
const found = [];
if (document.documentElement.scrollWidth > width + 1) {
  found.push('page scrollWidth ' + document.documentElement.scrollWidth);
}
for (const el of document.body.querySelectorAll('*')) {
  const box = el.getBoundingClientRect();
  if (box.width > 0 && box.right > width + 1) {
    found.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' right ' +
               Math.round(box.right));
  }
}
return [window.innerWidth, found.slice(0, 10)];
"""


def shoot(driver: Any, path: Path) -> None:
    """A screenshot of the whole page at WIDTH, below the fold too (Chromium's DevTools)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": WIDTH, "height": int(height), "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))


def test_every_page_in_every_language_fits_1000px_and_holds_no_english(
    browser: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT)
    shots = artifacts_dir() / "pages"
    shots.mkdir(parents=True, exist_ok=True)
    problems: dict[str, Any] = {}
    seen = 0
    with Sandbox(seed_leads=9, seed=21, plan="fast", custom_fields=True) as portal:
        page = make_page_app(portal, tmp_path)
        jobs = seed_jobs(page, create_fields=True)
        with ThreadedServer(page.app) as server:
            portal.page_url = f"{server.url}/app"
            browser.set_window_size(WIDTH, 900)

            def check(lang: str, role: str, name: str) -> None:
                nonlocal seen
                wait.until(ec.presence_of_element_located((By.TAG_NAME, "h1")))
                key = f"{lang}_{role}_{name}"
                left = english_left(browser.execute_script(VISIBLE_TEXTS), lang)
                width, wide = browser.execute_script(OVERFLOW)
                assert width == WIDTH, (
                    f"the window is {width} px wide, not {WIDTH}"
                )  # scrollbar included
                if left:
                    problems[f"{key}: English"] = left
                if wide:
                    problems[f"{key}: wider than {WIDTH} px"] = wide
                shoot(browser, shots / f"{key}.png")
                seen += 1

            for lang in i18n.LOCALES:
                browser.get(f"{server.url}/install?LANG={lang}")
                check(lang, "any", "installer")
                for role, user_id in ROLES.items():
                    browser.get(f"{portal.base_url}/portal/app?user={user_id}&lang={lang}")
                    wait.until(ec.frame_to_be_available_and_switch_to_it("app-frame"))
                    meta = wait.until(
                        ec.presence_of_element_located(
                            (By.CSS_SELECTOR, 'meta[name="b24app-page-token"]')
                        )
                    )
                    token = meta.get_attribute("content")
                    browser.switch_to.default_content()
                    base = f"{server.url}/app"
                    browser.get(f"{base}?t={token}")
                    check(lang, role, "overview")
                    if role == "admin":
                        browser.find_element(By.ID, "preview-button").click()
                    else:
                        browser.get(f"{base}/preview?t={token}")
                    wait.until(ec.presence_of_element_located((By.ID, "preview-summary")))
                    check(lang, role, "preview")
                    for name, job_id in jobs.items():
                        browser.get(f"{base}/jobs/{job_id}?t={token}")
                        check(lang, role, f"job_{name}")
                    browser.get(f"{base}?t={token}&before={jobs['stopped']}")
                    check(lang, role, "older_jobs")
                    if role == "admin":  # the admins' pages: undo a job, check the portal
                        browser.get(f"{base}/jobs/{jobs['report']}/undo?t={token}")
                        wait.until(ec.presence_of_element_located((By.ID, "undo-preview")))
                        # the fields the conversion created are listed (and translated) too
                        assert browser.find_elements(By.CSS_SELECTOR, "#undo-fields tr[data-field]")
                        check(lang, role, "undo")
                        browser.get(f"{base}/doctor?t={token}")
                        wait.until(ec.presence_of_element_located((By.ID, "doctor-checks")))
                        check(lang, role, "doctor")
                    browser.get(f"{base}/jobs/999?t={token}")
                    check(lang, role, "error")
    assert seen == len(i18n.LOCALES) * (1 + len(ROLES) * (4 + len(jobs)) + 2)
    assert problems == {}
