"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for tests that
open generated HTML as a user's browser would: console errors, exceptions, every request
made, dialogs, the rendered DOM and screenshots.

`./dev test` installs the `chromium` package when it is missing (Debian, as root);
`CALLQA_TEST_CHROMIUM` names another binary.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# No sandbox (containers, root), no GPU, and nothing that talks to a network by itself.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
]


def chromium_binary() -> str | None:
    named = os.environ.get("CALLQA_TEST_CHROMIUM")
    if named:
        return named
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class DevToolsError(RuntimeError):
    pass


@dataclass
class PageLoad:
    """What happened while one page loaded."""

    url: str
    console_errors: list[str] = field(default_factory=list)  # console.error / assert
    exceptions: list[str] = field(default_factory=list)  # uncaught JavaScript exceptions
    log_errors: list[str] = field(default_factory=list)  # CSP violations, failed loads, ...
    requests: list[str] = field(default_factory=list)  # every URL the page requested
    failed_requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)  # alert/confirm/prompt messages

    @property
    def errors(self) -> list[str]:
        return [
            *self.console_errors,
            *self.exceptions,
            *self.log_errors,
            *self.failed_requests,
            *(f"dialog: {d}" for d in self.dialogs),
        ]


class Chromium:
    """One headless Chromium with a fresh profile and one page, controlled over CDP."""

    def __init__(self, workdir: Path, width: int = 1400, height: int = 1000) -> None:
        from websockets.sync.client import connect

        binary = chromium_binary()
        if binary is None:
            raise FileNotFoundError(
                "chromium not found: install Debian's `chromium` package (./dev test does so "
                "as root) or set CALLQA_TEST_CHROMIUM to a Chromium binary"
            )
        workdir.mkdir(parents=True, exist_ok=True)
        profile = workdir / "profile"
        self.log_path = workdir / "chromium.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                *FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            port = self._wait_for_port(profile / "DevToolsActivePort")
            targets = json.loads(
                urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read()
            )
            page = next(t for t in targets if t["type"] == "page")
            self._stack = contextlib.ExitStack()
            self.ws = self._stack.enter_context(
                connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
            )
        except BaseException:
            self.close()
            raise
        self._next_id = 0
        self._events: list[dict] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def _wait_for_port(self, path: Path, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DevToolsError(
                    f"chromium exited with {self.process.returncode}: "
                    f"{self.log_path.read_text(errors='replace')[-2000:]}"
                )
            if path.exists():
                first = path.read_text().splitlines()[:1]
                if first and first[0].isdigit():
                    return int(first[0])
            time.sleep(0.05)
        raise DevToolsError(f"chromium did not open its DevTools port within {timeout} s")

    # --- protocol ------------------------------------------------------------------------
    def _receive(self, timeout: float) -> dict:
        message = json.loads(self.ws.recv(timeout=timeout))
        if message.get("method") == "Page.javascriptDialogOpening":
            # Answer at once, or the page would block; the load records the message.
            self._post("Page.handleJavaScriptDialog", {"accept": True})
        return message

    def _post(self, method: str, params: dict | None = None) -> int:
        self._next_id += 1
        self.ws.send(json.dumps({"id": self._next_id, "method": method, "params": params or {}}))
        return self._next_id

    def send(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        message_id = self._post(method, params)
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(max(0.01, deadline - time.monotonic()))
            if message.get("id") == message_id:
                if "error" in message:
                    raise DevToolsError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self._events.append(message)

    def _wait_event(self, method: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self._events:
                if event["method"] == method:
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DevToolsError(f"no {method} within {timeout} s")
            message = self._receive(remaining)
            if "method" in message:
                self._events.append(message)

    def _drain(self, seconds: float) -> None:
        """Collect events for a short while (late console messages, failed requests)."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                message = self._receive(remaining)
            except TimeoutError:
                return
            if "method" in message:
                self._events.append(message)

    # --- pages ---------------------------------------------------------------------------
    def load(self, url: str, ready: str = "true", timeout: float = 60) -> PageLoad:
        """Navigate to `url`, wait for the load event and until the JavaScript expression
        `ready` is true, and report what the page logged and requested."""
        self._events = []
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise DevToolsError(f"navigating to {url}: {result['errorText']}")
        self._wait_event("Page.loadEventFired", timeout)
        deadline = time.monotonic() + timeout
        while not self.evaluate(f"Boolean({ready})"):
            if time.monotonic() > deadline:
                raise DevToolsError(f"{url}: {ready} still false after {timeout} s")
            self._drain(0.1)
        self._drain(0.5)
        return self._page_load(url)

    def _page_load(self, url: str) -> PageLoad:
        load = PageLoad(url=url)
        for event in self._events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                load.console_errors.append(
                    " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
                )
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                load.exceptions.append(
                    details.get("exception", {}).get("description") or details.get("text", "")
                )
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                load.log_errors.append(f"{entry.get('source')}: {entry.get('text')}")
            elif method == "Network.requestWillBeSent":
                load.requests.append(params["request"]["url"])
            elif method == "Network.loadingFailed" and not params.get("canceled"):
                load.failed_requests.append(f"request failed: {params.get('errorText')}")
            elif method == "Page.javascriptDialogOpening":
                load.dialogs.append(params.get("message", ""))
        return load

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params: dict = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": size["height"],
                "scale": 1,
            }
        data = self.send("Page.captureScreenshot", params, timeout=60)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            with contextlib.suppress(Exception):
                self._post("Browser.close")
            self._stack.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
