"""Headless Debian chromium for the browser tests, driven by Python playwright.

Playwright's own browser downloads are never used (`playwright install` needs the network):
the tests drive the system chromium at /usr/bin/chromium, which this module installs with apt
when it is missing (about 100 s, as root). Only when apt is impossible (not root, or no apt-get)
do the browser tests skip, saying why.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from helpers import ROOT

CHROMIUM = Path(os.environ.get("TT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"


def ensure_chromium() -> Path:
    "The system chromium; installed with apt when missing. Skips (with the reason) only if apt is impossible."
    if CHROMIUM.exists():
        return CHROMIUM
    if not shutil.which("apt-get"):
        pytest.skip(f"{CHROMIUM} is missing and there is no apt-get to install it: install chromium to run this test")
    if os.geteuid() != 0:
        pytest.skip(f"{CHROMIUM} is missing and installing it needs root: run `sudo apt-get install -y chromium` "
                    "(or `make browser` as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "--no-install-recommends", "chromium"]
    res = subprocess.run(install, env=env, capture_output=True, text=True, timeout=1200)
    if res.returncode != 0:  # a stale package list is the usual cause
        subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update"], env=env, capture_output=True,
                       timeout=600)
        res = subprocess.run(install, env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0 and CHROMIUM.exists(), f"apt-get install chromium failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}"
    return CHROMIUM


@contextlib.contextmanager
def browser_context(viewport=(1280, 900)):
    "A playwright browser context on a fresh chromium profile (temporary user-data-dir)."
    executable = ensure_chromium()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="tt-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=str(executable), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": viewport[0], "height": viewport[1]})
        try:
            yield context
        finally:
            context.close()


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_directory(path: Path):
    "Serve `path` with http.server on 127.0.0.1 (a real socket, in a thread); yields the base URL."
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def wait_until(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    "Poll `predicate` until it returns something truthy; fail after `timeout` seconds."
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
