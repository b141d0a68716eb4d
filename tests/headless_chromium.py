"""Debian's Chromium, headless, driven by selenium: for the exported web page's test and its benchmark.

The browser and its driver come from the distribution (`apt-get install chromium chromium-driver`,
as .ci/run does), never downloaded by a tool: nothing outside this machine can be reached.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Optional

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# Headless as root, in a closed network: with background networking on, Chromium keeps trying to
# reach Google's hosts (updates, sync, QUIC probes), and every refused connection is noise or a wait.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def missing() -> Optional[str]:
    """Why the browser cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    absent = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    return f"{' and '.join(absent)} missing (apt-get install chromium chromium-driver)" if absent else None


class Page:
    """One browser, for pages opened from disk; close() when done (or use it in a with block)."""

    def __init__(self):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="charrnn-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*FLAGS, f"--user-data-dir={self.profile}"):
            options.add_argument(flag)
        # The DevTools log of every request the page makes, and its console: the test reads both.
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)

    def __enter__(self) -> "Page":
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def close(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)

    def open(self, path: Path) -> None:
        self.url = path.resolve().as_uri()
        self.driver.get(self.url)

    def press(self, button: str, fields: dict) -> None:
        """Fill the page's fields (id -> value), then press `button`."""
        self.driver.execute_script(
            "for (const [id, value] of Object.entries(arguments[0])) document.getElementById(id).value = value;", fields)
        self.driver.find_element("id", button).click()

    def shown(self, element: str, text: bool = True) -> dict:
        """An element's data attributes (state, charsPerSecond, bpc), the length of its text, and the text."""
        return self.driver.execute_script(
            "const e = document.getElementById(arguments[0]);"
            "return {...e.dataset, length: e.textContent.length, ...(arguments[1] ? {text: e.textContent} : {})};",
            element, text)

    def wait(self, element: str, until, timeout: float = 60) -> dict:
        """What `element` shows once until(shown) holds (tested on all but its text, which may be long)."""
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.driver, timeout, poll_frequency=0.02).until(lambda _: until(self.shown(element, text=False)))
        return self.shown(element)

    def run(self, button: str, element: str, fields: dict) -> dict:
        """Press `button` with `fields`, and what `element` shows once it no longer runs."""
        self.press(button, fields)
        return self.wait(element, lambda shown: shown["state"] != "running")

    def generate(self, prime: str, temperature: float, length: int) -> dict:
        """Text (the prime, then what the page wrote), state and charsPerSecond."""
        return self.run("generate", "output", {"prime": prime, "temperature": str(temperature), "length": str(length)})

    def surprise(self, text: str) -> dict:
        """The page's surprise view of `text`: state and bpc."""
        return self.run("measure", "surprise-view", {"text": text})

    def requests(self) -> list[str]:
        """Every URL the opened page requested, its own included (not those of the browser's start page)."""
        events = (json.loads(entry["message"])["message"] for entry in self.driver.get_log("performance"))
        return [event["params"]["request"]["url"] for event in events
                if event["method"] == "Network.requestWillBeSent" and event["params"].get("documentURL") == self.url]

    def console_errors(self) -> list[str]:
        """Errors the page logged (a script error, a request the page's security policy refused)."""
        return [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]
