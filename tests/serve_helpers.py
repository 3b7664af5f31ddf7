"""A `tt-serve` process on a free 127.0.0.1 port, and a tiny HTTP client for it (shared by the serving tests)."""
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

from helpers import BIN, stop_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, body=None, timeout=60):
    "(status, parsed JSON) of a GET, or of a POST when `body` (bytes or a dict) is given."
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Server:
    "A `tt-serve` process on a free 127.0.0.1 port; stopped with SIGTERM."

    def __init__(self, model, *args, log_file=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [str(BIN / "tt-serve"), "--model", str(model), "--port", str(self.port), *map(str, args)]
        if log_file:
            cmd += ["--log-file", str(log_file)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tt-serve exited with {self.proc.returncode}: {self.proc.stderr.read()}")
            try:
                if call(f"{self.url}/health", timeout=2)[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("tt-serve did not answer /health within 90 s")

    def stop(self):
        stop_process(self.proc)
