"""The HTML report in a real headless Chromium: no console errors, every image loads, the
verdict on the first screen, nothing wider than the window, not blank.

Chromium comes from Debian (`apt-get install -y chromium`); without it this test fails on
purpose. Set MNIST_DIST_CHROMIUM to use another binary.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import websocket
from PIL import Image

from mnist_dist.report.render import render_report
from tests.test_report_predictions import unlabelled_report

SAMPLE = Path(__file__).parent / "data" / "report-sample.json"
CHROMIUM = Path(os.environ.get("MNIST_DIST_CHROMIUM", "/usr/bin/chromium"))
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-dev-shm-usage", "--remote-debugging-port=0", "--remote-allow-origins=*",
    "--window-size=1366,900",
)
START_SECONDS = 30.0

pytestmark = pytest.mark.browser


class DevTools:
    """A minimal Chrome DevTools Protocol client for one page target."""

    def __init__(self, url: str) -> None:
        self.socket = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.events: list[dict[str, Any]] = []
        self.last_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self.last_id += 1
        self.socket.send(json.dumps({"id": self.last_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.last_id:
                assert "error" not in message, f"{method} failed: {message['error']}"
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, seconds: float) -> dict[str, Any]:
        """Block until `event` arrives (or was already received), at most `seconds`."""
        deadline = time.monotonic() + seconds
        while not any(e.get("method") == event for e in self.events):
            assert time.monotonic() < deadline, f"no {event} within {seconds} s"
            self.socket.settimeout(max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(self.socket.recv()))
        return next(e for e in self.events if e.get("method") == event)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression evaluated in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"]["value"]

    def close(self) -> None:
        """Close the socket."""
        self.socket.close()


@contextmanager
def chromium(profile: Path) -> Iterator[str]:
    """Start headless Chromium with a fresh profile; yields its DevTools HTTP address."""
    assert CHROMIUM.exists(), (
        f"Chromium is required at {CHROMIUM}: apt-get update && apt-get install -y chromium"
    )
    process = subprocess.Popen(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{devtools_port(profile, process)}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)


def devtools_port(profile: Path, process: subprocess.Popen[bytes]) -> int:
    """Poll the profile's DevToolsActivePort file (written once Chromium listens)."""
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, f"Chromium exited with {process.returncode}"
        if port_file.exists() and port_file.read_text().strip():
            return int(port_file.read_text().split()[0])
        time.sleep(0.05)
    raise AssertionError(f"Chromium did not open DevTools within {START_SECONDS} s")


def page_socket(base: str) -> str:
    """The DevTools websocket address of Chromium's first page target."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/json/list", timeout=5) as response:
            pages = [t for t in json.load(response) if t.get("type") == "page"]
        if pages:
            return str(pages[0]["webSocketDebuggerUrl"])
        time.sleep(0.05)
    raise AssertionError("Chromium opened no page target")


def console_errors(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Console errors, uncaught exceptions and error log entries (failed loads included)."""
    return [
        e for e in events
        if e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Runtime.consoleAPICalled"
            and e["params"].get("type") in ("error", "assert"))
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error")
    ]


def open_report(page: DevTools, html: Path) -> None:
    """Enable the event domains, load `html` and wait for its load event."""
    for domain in ("Runtime", "Log", "Page"):
        page.call(f"{domain}.enable")
    page.call("Emulation.setDeviceMetricsOverride", width=1366, height=900,
              deviceScaleFactor=1, mobile=False)
    page.call("Page.navigate", url=html.as_uri())
    page.wait_for("Page.loadEventFired", 30)


def screenshot(page: DevTools, full_page: bool = False) -> bytes:
    """A PNG of the viewport (or of the whole page)."""
    params: dict[str, Any] = {"format": "png"}
    if full_page:
        height = page.evaluate("document.documentElement.scrollHeight")
        params |= {"captureBeyondViewport": True,
                   "clip": {"x": 0, "y": 0, "width": 1366, "height": height, "scale": 1}}
    return base64.b64decode(page.call("Page.captureScreenshot", **params)["data"])


@pytest.fixture(scope="module", params=["labelled", "unlabelled"])
def report_html(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample run's report.html, and that of a run without labels (its predictions
    section, galleries with neighbours), each rendered once for this module."""
    out = tmp_path_factory.mktemp("browser-report")
    labelled = request.param == "labelled"
    render_report(json.loads(SAMPLE.read_text()) if labelled else unlabelled_report(), out)
    return out / "report.html"


def test_report_renders_in_chromium(report_html: Path, tmp_path: Path) -> None:
    with chromium(tmp_path / "profile") as base:
        page = DevTools(page_socket(base))
        try:
            open_report(page, report_html)
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])"
            )
            title = page.evaluate("document.title")
            # Nothing wider than the window, no section wider than its box; the verdict in view.
            page_width = page.evaluate("document.documentElement.scrollWidth")
            overflowing = page.evaluate(
                "Array.from(document.querySelectorAll('section, table, img'))"
                ".filter(e => e.getBoundingClientRect().right > window.innerWidth"
                " || (e.tagName === 'SECTION' && e.scrollWidth > e.clientWidth + 1))"
                ".map(e => e.id || e.className || e.tagName)")
            verdict = page.evaluate(
                "(() => { const h = document.querySelector('#verdict .headline');"
                " return h ? [h.innerText, h.getBoundingClientRect().bottom] : null; })()")
            shot = screenshot(page)
        finally:
            page.close()
    assert console_errors(page.events) == []
    assert len(images) == report_html.read_text().count("<img ")
    assert len(images) >= 5
    assert [alt for done, width, alt in images if not (done and width > 0)] == []
    assert title.startswith("MNIST scoring report")
    assert page_width <= 1366 and overflowing == []
    assert verdict is not None and verdict[0] and verdict[1] <= 900  # first screen
    assert_not_blank(shot)


def assert_not_blank(png: bytes) -> None:
    """The screenshot has a real picture: many colours, and ink over a fair share of it."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert pixels.shape[:2] == (900, 1366)
    background = np.median(pixels.reshape(-1, 3), axis=0)
    differs = np.abs(pixels.astype(int) - background).sum(axis=2) > 30
    assert differs.mean() > 0.05, "the screenshot is (nearly) one colour"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
