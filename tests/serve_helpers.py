"""A `tt-serve` process on a free 127.0.0.1 port, and small clients for it (shared by the serving tests and bench)."""
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from helpers import BIN, stop_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, body=None, timeout=60, headers=None, method=None):
    "(status, parsed JSON) of a GET, or of a POST when `body` (bytes or a dict) is given."
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


def raw_request(port: int, data: bytes, timeout: float = 30) -> bytes:
    "Send raw bytes to the server and read until it closes the connection (or `timeout`)."
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, socket.timeout):
            pass
        return b"".join(chunks)


def http_post(path: str, body: bytes, headers: dict | None = None, keep_alive: bool = False) -> bytes:
    "A raw HTTP/1.1 POST with a JSON content type (headers may override)."
    h = {"Host": "127.0.0.1", "Content-Type": "application/json", "Content-Length": str(len(body)),
         "Connection": "keep-alive" if keep_alive else "close", **(headers or {})}
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items() if v is not None) + "\r\n"
    return head.encode() + body


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    "A memory figure of a process from /proc (VmRSS now, VmHWM peak), in kB."
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss(pid: int) -> None:
    "Reset VmHWM (the peak RSS) of a process we own to its current RSS (Linux: write 5 to clear_refs)."
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class Server:
    "A `tt-serve` process on a free 127.0.0.1 port; stopped with SIGTERM."

    def __init__(self, model, *args, log_file=None, ready_timeout=120):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [str(BIN / "tt-serve"), "--model", str(model), "--port", str(self.port), *map(str, args)]
        if log_file:
            cmd += ["--log-file", str(log_file)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        # The server logs a line per request: to a file, never to a pipe nobody drains (a full pipe blocks the server).
        self.output = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(cmd, stdout=self.output, stderr=subprocess.STDOUT, text=True, env=env)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tt-serve exited with {self.proc.returncode}: {self.read_output()}")
            try:
                if call(f"{self.url}/health", timeout=2)[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"tt-serve did not answer /health within {ready_timeout} s")

    @property
    def model_id(self) -> str:
        return call(f"{self.url}/v1/models")[1]["data"][0]["id"]

    def health(self) -> dict:
        return call(f"{self.url}/health")[1]

    def wait_until(self, predicate, timeout: float = 30, what: str = "condition") -> dict:
        "Poll /health until `predicate(health)`; return that health dict."
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            h = self.health()
            if predicate(h):
                return h
            time.sleep(0.05)
        raise AssertionError(f"{what} not reached within {timeout}s: {self.health()}")

    def read_output(self) -> str:
        "What the server wrote to stdout and stderr so far."
        self.output.seek(0)
        return self.output.read()

    def stop(self):
        stop_process(self.proc)
        self.output.close()


def random_model_file(path: Path, d_model=256, n_layers=4, max_seq_len=512) -> Path:
    "An untrained, slower-to-decode model as a safetensors file (char tokenizer over printable ASCII)."
    import torch

    from tiny_transformer.data import CharTokenizer
    from tiny_transformer.export import export_metadata, export_safetensors
    from tiny_transformer.model import TinyTransformerLM

    torch.manual_seed(0)
    tok = CharTokenizer("".join(chr(i) for i in range(32, 127)) + "\n")
    model = TinyTransformerLM(tok.vocab_size, d_model=d_model, n_heads=4, n_layers=n_layers, d_ff=4 * d_model,
                              max_seq_len=max_seq_len, dropout=0.0).eval()
    return export_safetensors(model, path, export_metadata(model, tok.state_dict(), "safetensors"))
