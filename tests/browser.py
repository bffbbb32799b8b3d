"""A person at the settings page: headless Chromium from Debian's packages driven by Selenium through
chromedriver, with a screenshot of every step kept in memory and written to `.screenshots/<test>/` when the
test fails (or always, with `PROVISIONING_SCREENSHOTS=always`)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = Path(__file__).resolve().parent.parent / ".screenshots"
# As the machine's notes say: without the background-networking flags Chromium keeps dialling hosts that
# this closed network refuses.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)


def chromium_or_skip() -> None:
    """Skip without Chromium, except under CI, where `.ci/run` installs it and its absence is a failure."""
    if shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER):
        return
    if os.environ.get("CI"):
        pytest.fail(
            "Chromium and chromedriver are missing; .ci/run installs them (apt-get install chromium chromium-driver)."
        )
    pytest.skip("Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")


class Browser:
    def __init__(self, driver: Any, base_url: str) -> None:
        self.driver, self.base_url = driver, base_url
        self.shots: list[tuple[str, bytes]] = []

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def step(self, name: str) -> None:
        """A screenshot of what the person sees now, named for the step."""
        self.shots.append((name, self.driver.get_screenshot_as_png()))

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def text(self, css: str = "main") -> str:
        return str(self.find(css).text)

    def link(self, text: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.LINK_TEXT, text)

    def button(self, text: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.XPATH, f"//button[normalize-space()='{text}']")

    def wait_for(self, condition: Callable[[], Any], timeout: float = 60, what: str = "the page") -> Any:
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        def check(_driver: Any) -> Any:
            try:
                return condition()
            except WebDriverException:  # mid-reload: the element went stale or is not there yet
                return False

        return WebDriverWait(self.driver, timeout, poll_frequency=0.2).until(check, message=f"waiting for {what}")

    def press_tab_until(self, matches: Callable[[Any], bool], limit: int = 60) -> Any:
        """Press Tab, as a keyboard user does, until the focused control `matches`; return it."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        for _ in range(limit):
            ActionChains(self.driver).send_keys(Keys.TAB).perform()
            focused = self.driver.switch_to.active_element
            if matches(focused):
                return focused
        raise AssertionError(f"no control reached with {limit} presses of Tab")

    def save(self, test_name: str) -> Path:
        folder = SHOTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for n, (name, png) in enumerate(self.shots, 1):
            (folder / f"{n:02d}-{re.sub(r'[^a-z0-9]+', '-', name.lower())}.png").write_bytes(png)
        return folder


@contextmanager
def chromium(base_url: str, request: pytest.FixtureRequest) -> Iterator[Browser]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service as DriverService

    chromium_or_skip()
    options = Options()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    browser = Browser(driver, base_url)
    try:
        yield browser
    finally:
        report = getattr(request.node, "report_call", None)
        failed = report is None or report.failed
        if failed:
            browser.step("when it failed")
        if failed or os.environ.get("PROVISIONING_SCREENSHOTS") == "always":
            folder = browser.save(request.node.name)
            print(f"screenshots of each step: {folder}")
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
