"""Drive headless Chromium over the DevTools protocol on a pipe (`--remote-debugging-pipe`):
JSON messages ended by a NUL byte on file descriptors 3 (to Chromium) and 4 (from it). No
websocket, no extra package: enough to type into a form, click, and take a screenshot."""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["HEADLESS_CHROMIUM", "Browser"]

# Headless, quiet, and on loopback only: nothing of a test run leaves the machine.
HEADLESS_CHROMIUM = (
    "chromium",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class Browser:
    def __init__(self, profile: Path, *flags: str, timeout_s: float = 60.0) -> None:
        self.timeout_s = timeout_s
        to_chromium_r, self._to_chromium = os.pipe()
        self._from_chromium, from_chromium_w = os.pipe()

        def wire_pipes() -> None:  # in the child: the pipe ends on the descriptors it expects
            os.dup2(to_chromium_r, 3)
            os.dup2(from_chromium_w, 4)

        self.process = subprocess.Popen(
            [
                *HEADLESS_CHROMIUM,
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                *flags,
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire_pipes,
            # Kept open in the child: preexec_fn runs before the other descriptors are closed.
            pass_fds=(3, 4),
        )
        os.close(to_chromium_r)
        os.close(from_chromium_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Page.enable", session=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.process.kill()
        self.process.wait(timeout=30)
        os.close(self._to_chromium)
        os.close(self._from_chromium)

    def call(self, method: str, *, session: bool = False, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events that arrive meanwhile are kept)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_chromium, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            self.events.append(reply)

    def wait_for_event(self, method: str) -> dict[str, Any]:
        for index, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(index)
        while True:
            event = self._receive()
            if event.get("method") == method:
                return event
            self.events.append(event)

    def navigate(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_for_event("Page.loadEventFired")

    def run(self, expression: str) -> Any:
        """Evaluate JavaScript in the page and return its value."""
        result = self.call(
            "Runtime.evaluate", session=True, expression=expression, returnByValue=True
        )
        return result["result"].get("value")

    def act_and_wait_for_load(self, expression: str) -> None:
        """Run an action that navigates (a click, a submit) and wait for the new page."""
        self.events.clear()
        self.run(expression)
        self.wait_for_event("Page.loadEventFired")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chromium], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._from_chromium, 65536)
            if not chunk:
                raise ConnectionError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(message))
