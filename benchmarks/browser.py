"""Headless Chromium, driven through chromedriver's W3C WebDriver protocol: the demo page's browser test and screenshot.

Chromium and its driver come from Debian's `chromium` and `chromium-driver` packages
(`apt-get install chromium chromium-driver`) and are found on PATH; nothing is downloaded.
The protocol is JSON over HTTP, so a few calls of it cover what a test needs (open a
page, type, click, read text, take a screenshot) without a client library.

    with Browser() as browser:
        browser.get("http://127.0.0.1:8080/")
        browser.type("#question", "When was Nikola Tesla born?")
        browser.click("#submit")
        print(browser.wait_for("mark.answer").text)
"""

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# The key W3C WebDriver gives a found element's id under.
ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"


class BrowserError(RuntimeError):
    """Chromium or chromedriver is missing, did not start, or refused a command."""


def find_browser() -> Optional[Tuple[str, str]]:
    """(chromedriver, chromium) paths from PATH, or None if either is missing."""
    driver = shutil.which("chromedriver")
    chromium = next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)
    return (driver, chromium) if driver and chromium else None


class Element:
    """A found element: `text`, `displayed`, `attribute(name)`."""

    def __init__(self, browser: "Browser", element_id: str):
        self._browser, self.id = browser, element_id

    def _get(self, what: str) -> Any:
        return self._browser.command("GET", f"/element/{self.id}/{what}")

    @property
    def text(self) -> str:
        return self._get("text")

    @property
    def displayed(self) -> bool:
        return bool(self._get("displayed"))

    def attribute(self, name: str) -> Optional[str]:
        return self._get(f"attribute/{name}")


class Browser:
    """A headless Chromium session; a context manager that ends it and its chromedriver.

    Args:
      window: the window's (width, height) in CSS pixels, which screenshots have.
      timeout: seconds to wait for chromedriver and for each command.
    """

    def __init__(self, window: Tuple[int, int] = (1100, 1300), timeout: float = 60.0):
        found = find_browser()
        if found is None:
            raise BrowserError("Chromium and chromedriver are not both on PATH "
                               "(apt-get install chromium chromium-driver)")
        driver, chromium = found
        self._timeout = timeout
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self._driver = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self._url = f"http://127.0.0.1:{port}"
        self._session = None
        try:
            self._wait_until_ready()
            options = {"binary": chromium, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions", f"--window-size={window[0]},{window[1]}"]}
            created = self._request("POST", "/session", {"capabilities": {"alwaysMatch": {
                "browserName": "chrome", "goog:chromeOptions": options}}})
            self._session = created["sessionId"]
        except BaseException:
            self.close()
            raise

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self._driver.poll() is not None:
                raise BrowserError(f"chromedriver exited with status {self._driver.returncode}")
            try:
                if self._request("GET", "/status").get("ready"):
                    return
            except (BrowserError, OSError):
                pass
            time.sleep(0.1)
        raise BrowserError(f"chromedriver was not ready within {self._timeout:g} s")

    def _request(self, method: str, path: str, body: Optional[Dict] = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self._url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as e:
            try:
                value = json.loads(e.read())["value"]
                message = f"{value.get('error')}: {value.get('message', '').splitlines()[0]}"
            except (ValueError, KeyError, AttributeError, IndexError):
                message = f"HTTP {e.code}"
            raise BrowserError(f"WebDriver {method} {path}: {message}") from None

    def command(self, method: str, path: str, body: Optional[Dict] = None) -> Any:
        """A WebDriver command of this session (`path` below /session/<id>)."""
        return self._request(method, f"/session/{self._session}{path}", body if method == "POST" else None)

    def get(self, url: str) -> None:
        self.command("POST", "/url", {"url": url})

    def find_all(self, css: str) -> List[Element]:
        found = self.command("POST", "/elements", {"using": "css selector", "value": css})
        return [Element(self, value[ELEMENT_KEY]) for value in found]

    def find(self, css: str) -> Element:
        found = self.find_all(css)
        if not found:
            raise BrowserError(f"no element matches {css!r}")
        return found[0]

    def wait_for(self, css: str, timeout: float = 30.0) -> Element:
        """The first element matching `css` once it is displayed."""
        deadline = time.monotonic() + timeout
        while True:
            visible = [e for e in self.find_all(css) if e.displayed]
            if visible:
                return visible[0]
            if time.monotonic() > deadline:
                raise BrowserError(f"no displayed element matches {css!r} after {timeout:g} s")
            time.sleep(0.1)

    def type(self, css: str, text: str, clear: bool = True) -> None:
        element = self.find(css)
        if clear:
            self.command("POST", f"/element/{element.id}/clear", {})
        self.command("POST", f"/element/{element.id}/value", {"text": text})

    def click(self, css: str) -> None:
        self.command("POST", f"/element/{self.find(css).id}/click", {})

    def execute(self, script: str, *args: Any) -> Any:
        """Runs `script` (a function body; `arguments` holds `args`) in the page; returns its value."""
        return self.command("POST", "/execute/sync", {"script": script, "args": list(args)})

    def screenshot(self, path: str) -> None:
        """The window as a PNG at `path`."""
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.command("GET", "/screenshot")))

    def close(self) -> None:
        if self._session is not None:
            try:
                self._request("DELETE", f"/session/{self._session}")
            except (BrowserError, OSError):
                pass  # chromedriver ends the browser with itself below.
            self._session = None
        if self._driver.poll() is None:
            self._driver.terminate()
            try:
                self._driver.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._driver.kill()
                self._driver.wait()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
