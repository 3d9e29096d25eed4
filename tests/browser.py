"""A headless Chromium driven over its DevTools protocol, for tests that look at pages the
project writes (the HTML report): Debian's chromium, no Python browser package."""
from __future__ import annotations

import base64
import json
import os
import pathlib
import shutil
import subprocess
import time

import cv2
import numpy as np


def find_chromium() -> str | None:
    """Debian's chromium, installed here when missing (as root, with apt-get); None without it."""
    found = shutil.which("chromium")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
                       env=env, capture_output=True)
        found = shutil.which("chromium")
    return found


class DevTools:
    """Chromium's DevTools protocol over --remote-debugging-pipe (fd 3 in, fd 4 out)."""

    def __init__(self, binary: str, profile: pathlib.Path):
        to_chrome, self._write = os.pipe()
        self._read, from_chrome = os.pipe()

        def plumb():
            os.dup2(to_chrome, 3)
            os.dup2(from_chrome, 4)

        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "--no-first-run",
             "about:blank"], preexec_fn=plumb, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer, self._id = b"", 0

    def send(self, method: str, session: str | None = None, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def close(self):
        os.close(self._write)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._read)


def show(tools: DevTools, page: pathlib.Path, width: int = 1280, height: int = 2400,
         timeout_s: float = 60) -> tuple[np.ndarray, list[str]]:
    """Load ``page`` in a new tab: its screenshot (BGR) and the sources of its broken images."""
    target = tools.send("Target.createTarget", url="about:blank")["targetId"]
    session = tools.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    tools.send("Emulation.setDeviceMetricsOverride", session, width=width, height=height,
               deviceScaleFactor=1, mobile=False)
    tools.send("Page.navigate", session, url=page.resolve().as_uri())
    deadline = time.monotonic() + timeout_s
    probe = ("document.readyState === 'complete' && "
             "Array.from(document.images).every(i => i.complete)")
    while not tools.send("Runtime.evaluate", session, expression=probe)["result"]["value"]:
        assert time.monotonic() < deadline, f"{page} did not finish loading"
        time.sleep(0.2)
    broken = tools.send("Runtime.evaluate", session, returnByValue=True, expression=(
        "Array.from(document.images).filter(i => i.naturalWidth === 0)"
        ".map(i => i.getAttribute('src'))"))["result"]["value"]
    shot = tools.send("Page.captureScreenshot", session, format="png")["data"]
    tools.send("Target.closeTarget", targetId=target)
    return cv2.imdecode(np.frombuffer(base64.b64decode(shot), np.uint8), cv2.IMREAD_COLOR), broken
