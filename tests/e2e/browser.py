"""Headless Chromium driven over the DevTools protocol: enough to open a page as a signed-in user, read its DOM
and save a screenshot.

Debian's ``chromium`` package is the browser (the e2e runner installs it); no browser download, no driver
binary. The protocol is JSON over one WebSocket, spoken with the ``websockets`` package Airflow already pulls in.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.e2e.cluster import register_process_group

# The flags Debian's chromium needs to run headless as root in a container, with no network of its own.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
CANDIDATES = ("chromium", "chromium-browser")


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class HeadlessChromium:
    """``with HeadlessChromium(binary) as browser: browser.navigate(url)`` — a fresh profile per instance."""

    def __init__(self, binary: str, *, width: int = 1400, height: int = 1000, start_timeout: float = 60) -> None:
        self.binary = binary
        self.width = width
        self.height = height
        self.start_timeout = start_timeout
        self.profile = Path(tempfile.mkdtemp(prefix="cogmig-chromium-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.ws: ClientConnection | None = None
        self._ids = itertools.count(1)

    def start(self) -> HeadlessChromium:
        log = (self.profile / "chromium.log").open("wb")
        try:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={self.profile / 'profile'}",
                    f"--window-size={self.width},{self.height}",
                    "about:blank",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        register_process_group(self.proc.pid)
        try:
            port = self._devtools_port()
            pages = [
                t for t in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json() if t["type"] == "page"
            ]
            if not pages:
                raise BrowserError("chromium started without a page target")
            self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
            self.send("Page.enable")
            self.send("Runtime.enable")
        except BaseException:
            self.stop()
            raise
        return self

    def _devtools_port(self) -> int:
        """Chromium writes the port it picked (we asked for 0) into DevToolsActivePort in the profile."""
        marker = self.profile / "profile" / "DevToolsActivePort"
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited with {self.proc.returncode}:\n{self.log_tail()}")
            if marker.exists():
                first = marker.read_text().splitlines()[:1]
                if first and first[0].isdigit():
                    return int(first[0])
            time.sleep(0.2)
        raise BrowserError(f"chromium did not open its DevTools port within {self.start_timeout:.0f} s")

    def log_tail(self, chars: int = 3000) -> str:
        path = self.profile / "chromium.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                self.ws.close()
            self.ws = None
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            # Renderer and GPU helpers share the session; sweep them even if the leader already exited.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            self.proc = None
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> HeadlessChromium:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30) -> dict[str, Any]:
        """One protocol command; events that arrive before its answer are dropped (nothing here needs them)."""
        if self.ws is None:
            raise BrowserError("the browser is not started")
        call_id = next(self._ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"{method} got no answer within {timeout:.0f} s")
            message = json.loads(self.ws.recv(timeout=remaining))
            if message.get("id") != call_id:
                continue
            if "error" in message:
                raise BrowserError(f"{method} failed: {message['error']}")
            return dict(message.get("result", {}))

    def set_cookie(self, name: str, value: str, url: str) -> None:
        result = self.send("Network.setCookie", {"name": name, "value": value, "url": url, "httpOnly": True})
        if not result.get("success", True):
            raise BrowserError(f"chromium refused the {name} cookie for {url}")

    def navigate(self, url: str) -> None:
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"navigation to {url} failed: {result['errorText']}")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"script failed: {result['exceptionDetails'].get('text')} in {expression[:200]}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float, what: str) -> Any:
        """Poll a JavaScript expression until it is truthy; the page's visible text goes into the error."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.5)
        text = self.evaluate("document.body ? document.body.innerText.slice(0, 1500) : ''")
        raise BrowserError(f"{what}: not there after {timeout:.0f} s. The page shows:\n{text}")

    def screenshot(self, path: Path, *, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", params, timeout=60)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
