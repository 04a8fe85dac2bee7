"""The reference web client driven in a real browser: Debian's chromium through Playwright (from PyPI; no browser
download). Used by the browser tests and by ``make bench`` (time from the upload's 202 to done, in the page)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
TERMINAL = ("done", "rejected", "failed")


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"{CHROMIUM} is missing: `apt-get install chromium` (Debian) or set CHROMIUM to a Chromium binary"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed: `pip install -r requirements.txt`"
    return None


@contextlib.contextmanager
def chromium():
    """A headless Chromium (Debian's build, launched by path), closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


class WebClient:
    """One signed-in page of the web client, driven through its data-testid hooks (../shared/API.md)."""

    def __init__(self, browser, url: str):
        self.context = browser.new_context(viewport={"width": 1000, "height": 900})
        self.page = self.context.new_page()
        self.url = url
        self.console: list[str] = []
        self.page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        self.page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))

    def close(self) -> None:
        self.context.close()

    def get(self, testid: str):
        return self.page.get_by_test_id(testid)

    def open(self, job_id: str | None = None) -> None:
        self.page.goto(self.url + (f"#job={job_id}" if job_id else ""))

    def sign_in(self, email: str, password: str) -> None:
        self.get("email").fill(email)
        self.get("password").fill(password)
        self.get("sign-in").click()  # enabled once the page's script is ready
        self.page.wait_for_function(
            "() => !document.getElementById('signed-in').hidden"
            " || !document.querySelector('[data-testid=error]').hidden",
            timeout=30_000,
        )
        if not self.page.locator("#signed-in").is_visible():  # an error about a linked job is no sign-in failure
            raise AssertionError(f"sign-in failed: {self.get('error').inner_text()} ({self.console})")

    def upload(self, photo: Path) -> str:
        """Choose the photo, press upload; the job id once the page got its 202 and attached the listener."""
        previous = self.page.locator("#job-panel").get_attribute("data-job-id")
        self.get("photo").set_input_files(str(photo))
        self.get("upload").click()
        self.page.wait_for_function(
            "previous => { const p = document.getElementById('job-panel');"
            " return (!p.hidden && p.dataset.jobId && p.dataset.jobId !== previous)"
            " || !document.querySelector('[data-testid=error]').hidden }",
            arg=previous,
            timeout=30_000,
        )
        error = self.get("error")
        if error.is_visible():
            raise AssertionError(f"the page shows an error after upload: {error.inner_text()}")
        return self.page.locator("#job-panel").get_attribute("data-job-id")

    def wait_finished(self, timeout_s: float = 60) -> str:
        """The job's final status as the page shows it (through its Firestore listener)."""
        self.page.wait_for_function(
            "states => states.includes(document.querySelector('[data-testid=status]').textContent)",
            arg=list(TERMINAL),
            timeout=timeout_s * 1000,
        )
        return self.get("status").inner_text()

    def done_after_ms(self) -> float:
        """Milliseconds from the upload's 202 to the listener's `done` snapshot, measured in the page."""
        return float(self.page.locator("#job-panel").get_attribute("data-done-after-ms"))
