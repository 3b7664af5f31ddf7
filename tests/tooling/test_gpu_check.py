"""checks/gpu_check.sh, the one prepared GPU check: it must fail clearly without CUDA, and its logic (Trainer,
resume, ONNX sections and the report) must work, which a CPU dry run shows before any GPU time is spent."""
import json
import sys

import pytest
import torch

from helpers import ROOT, run

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: run checks/gpu_check.sh itself")


def test_without_cuda_it_says_so_and_exits_3(tmp_path):
    result = run(["bash", str(ROOT / "checks" / "gpu_check.sh"), "--out", str(tmp_path)], timeout=120,
                 env={"PYTHON": sys.executable})
    assert result.returncode == 3
    assert "CUDA is not available" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_cpu_dry_run_exercises_every_cpu_section(tmp_path):
    result = run(["bash", str(ROOT / "checks" / "gpu_check.sh"), "--cpu-dry-run", "--nanogpt-steps", "20",
                  "--out", str(tmp_path)], timeout=600, env={"PYTHON": sys.executable})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = next(tmp_path.glob("gpu-*.md")).read_text()
    results = json.loads(report.split("```json")[1].split("```")[0])
    for name in ("notebook_gpu_cells", "nanogpt_char", "checkpoint_resume", "onnx"):
        assert results[name]["ok"], results[name]
    assert results["nanogpt_char"]["steps"] == 20
    assert results["checkpoint_resume"]["resumed_to_step"] == 70
    assert results["onnx"]["max_abs_diff"] < 1e-4
