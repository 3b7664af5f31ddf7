"""The repository holds sources, not artifacts: no tracked file over 1 MB outside nbs/ (profiler dumps,
run folders and exported models belong under ignored folders)."""
from __future__ import annotations

import subprocess

from helpers import ROOT

LIMIT = 1_000_000


def test_no_tracked_file_over_1mb_outside_nbs():
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    big = {f: (ROOT / f).stat().st_size for f in files.split("\0")
           if f and not f.startswith("nbs/") and (ROOT / f).is_file() and (ROOT / f).stat().st_size > LIMIT}
    assert not big, f"tracked files over 1 MB outside nbs/ (write them under an ignored folder): {big}"


def test_profiler_output_is_ignored():
    "An ONNX Runtime profile written in the repository root is ignored by git."
    out = subprocess.run(["git", "check-ignore", "onnxruntime_profile__2026-01-01_00-00-00_000.json"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, "onnxruntime_profile_*.json must be in .gitignore"
