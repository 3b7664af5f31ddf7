"""checks/gpu_check.sh, the one prepared GPU check: it must fail clearly without CUDA, and its logic (the 07b GPU
notebook run as plain Python, the fp16 + GradScaler path, Trainer, resume, ONNX sections and the report) must
work, which a CPU dry run shows before any GPU time is spent."""
import json
import re
import sys

import pytest
import torch

from helpers import ROOT, run

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: run checks/gpu_check.sh itself")
H100 = ROOT / "bench" / "results" / "gpu-throughput-H100.md"


def dry_run(tmp_path, *args, timeout=600):
    result = run(["bash", str(ROOT / "checks" / "gpu_check.sh"), "--cpu-dry-run", *args, "--out", str(tmp_path)],
                 timeout=timeout, env={"PYTHON": sys.executable})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = next(tmp_path.glob("gpu-*.md")).read_text()
    return report, json.loads(report.split("```json")[1].split("```")[0])


def test_without_cuda_it_says_so_and_exits_3(tmp_path):
    result = run(["bash", str(ROOT / "checks" / "gpu_check.sh"), "--out", str(tmp_path)], timeout=120,
                 env={"PYTHON": sys.executable})
    assert result.returncode == 3
    assert "CUDA is not available" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_cpu_dry_run_of_the_gpu_notebook_takes_its_gpu_path(tmp_path):
    "TT_GPU_DRY_RUN=1: 07b's cells measure fp32 / AMP / AMP + compile on a toy model, without Jupyter."
    report, results = dry_run(tmp_path, "--skip", "cells,nanogpt", timeout=300)
    nb = results["amp_notebook"]
    assert nb["ok"] and nb["device"] == "cpu", nb
    code_cells = [c for c in json.loads((ROOT / "nbs" / "07b_gpu.ipynb").read_text())["cells"] if c["cell_type"] == "code"]
    assert nb["cells_run"] == len(code_cells) - 2  # all but the Colab install (a magic) and nbdev_export (nbval-skip)
    assert [r["variant"] for r in nb["rows"]] == ["fp32", "bf16 autocast", "bf16 autocast + compile"]
    assert all(r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 and not r["scaler"] for r in nb["rows"])
    assert (tmp_path / "gpu_throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fp16 = results["amp_fp16"]
    assert fp16["ok"] and [r["scaler"] for r in fp16["rows"]] == [False, True, True], fp16  # the T4 path
    assert "## nbs/07b_gpu.ipynb cells" in report and "| bf16 autocast + compile |" in report


def test_read_bench_table_reads_the_h100_file():
    from tiny_transformer.amp import read_bench_table

    date, rows = read_bench_table(H100, batch=32)
    assert date == re.search(r"^- date: (.+)$", H100.read_text(), re.M).group(1).strip()
    assert [r["variant"] for r in rows] == ["fp32_eager", "bf16_eager", "bf16_compile"]
    assert rows[2]["tokens_per_s"] > rows[1]["tokens_per_s"] > rows[0]["tokens_per_s"] > 0
    assert len(read_bench_table(H100, batch=None)[1]) == 9


def test_read_bench_table_names_a_malformed_file(tmp_path):
    from tiny_transformer.amp import read_bench_table

    bad = tmp_path / "gpu-throughput-X.md"
    bad.write_text("# no table here\n")
    with pytest.raises(ValueError, match=r"gpu-throughput-X\.md: expected a '- date:' line"):
        read_bench_table(bad)


def test_cpu_dry_run_exercises_every_cpu_section(tmp_path):
    _, results = dry_run(tmp_path, "--nanogpt-steps", "20")
    for name in ("amp_notebook", "amp_fp16", "notebook_gpu_cells", "nanogpt_char", "checkpoint_resume", "onnx"):
        assert results[name]["ok"], results[name]
    assert results["nanogpt_char"]["steps"] == 20
    assert results["checkpoint_resume"]["resumed_to_step"] == 70
    assert results["onnx"]["max_abs_diff"] < 1e-4


def test_a_missing_dependency_names_itself_and_the_fix(tmp_path):
    "The device machine has torch but no nbdev (so maybe no fastcore): exit 2 with what to do, not a traceback."
    python = tmp_path / "python-without-fastcore"
    python.write_text("#!/bin/bash\nexec " + sys.executable + " -c \"import sys, runpy; sys.modules['fastcore'] = None; "
                      "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')\" \"$@\"\n")
    python.chmod(0o755)
    out = tmp_path / "out"
    result = run(["bash", str(ROOT / "checks" / "gpu_check.sh"), "--cpu-dry-run", "--out", str(out)], timeout=120,
                 env={"PYTHON": str(python)})
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "'fastcore" in result.stderr and "gpu_check.sh --prepare" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()
