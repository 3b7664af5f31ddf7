"""Small shared fixtures for the process-level tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def corpus_path() -> Path:
    "The corpus the tests use: $TT_DATA (CI points it at ../shared/data)."
    path = os.environ.get("TT_DATA")
    if not path or not Path(path).is_file():
        raise RuntimeError("Set TT_DATA to a local copy of tinyshakespeare.txt to run the tests")
    return Path(path)


def run(cmd: list[str], timeout: float = 300, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    "Run a command (first item looked up in the venv's bin/), capturing text output."
    exe = BIN / cmd[0]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([str(exe) if exe.exists() else cmd[0], *cmd[1:]], capture_output=True, text=True,
                          timeout=timeout, env=full_env, **kwargs)
