"""Process-level tests of tiny_transformer.utils.logging: a writer killed mid-run leaves strict-JSON lines
(NaN and inf included), a cut last line is skipped and counted by the reader, and a resumed logger closes off
a line that a failed write cut short, so that every whole record is recovered."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings

from helpers import ROOT


def strict_loads(line: str):
    "A JSON parser that rejects NaN / Infinity tokens, as parsers outside Python do."
    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")
    return json.loads(line, parse_constant=refuse)


WRITER = """
import itertools, sys
from tiny_transformer.utils.logging import TrainingLogger
logger = TrainingLogger("killed", log_dir=sys.argv[1], log_to_console=False)
logger.log_start({"seed": 0, "training": {"learning_rate": float("inf")}})
for step in itertools.count():
    value = [float("nan"), float("inf"), -float("inf"), 1.0 / (step + 1)][step % 4]
    logger.log_metrics({"loss": value, "step_tensor": step}, step=step, prefix="train/")
"""


def test_killed_writer_leaves_only_strict_json_lines(tmp_path):
    from tiny_transformer.utils.log_analysis import parse_json_logs

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], env=env, stderr=subprocess.PIPE)
    log = tmp_path / "killed.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not log.exists() or log.stat().st_size < 200_000):
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    text = log.read_text()
    lines = text.split("\n")
    complete, tail = lines[:-1], lines[-1]  # everything before the last newline was fully written
    assert len(complete) > 100
    records = [strict_loads(line) for line in complete]  # raises on NaN/Infinity tokens or a broken line
    assert records[0]["event"] == "start" and records[0]["config"]["training"]["learning_rate"] == "Infinity"
    steps = [r["step"] for r in records[1:]]
    assert steps == list(range(len(steps)))  # step 0 included, nothing lost or reordered
    assert [r["metrics"]["train/loss"] for r in records[1:4]] == ["NaN", "Infinity", "-Infinity"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = parse_json_logs(log)
    assert parsed.skipped == (1 if tail else 0)
    assert len(parsed) == len(complete)
    assert math.isnan(parsed[1]["metrics"]["train/loss"]) and parsed[2]["metrics"]["train/loss"] == math.inf


def test_cut_last_line_is_skipped_and_counted(tmp_path):
    from tiny_transformer.utils.log_analysis import load_metrics, parse_json_logs
    from tiny_transformer.utils.logging import TrainingLogger

    with TrainingLogger("cut", log_dir=tmp_path, log_to_console=False) as logger:
        for step in range(5):
            logger.log_metrics({"loss": float("nan") if step == 2 else 3.0 - step}, step=step, prefix="train/")
    path = logger.log_file
    data = path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: last_start + 25])  # the last record cut mid-write
    for line in data.decode().splitlines():
        strict_loads(line)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = parse_json_logs(path)
    assert (len(records), records.skipped, records.skipped_lines) == (4, 1, [5])
    assert len(caught) == 1 and "skipped 1 line" in str(caught[0].message)
    frame = load_metrics(records)
    assert list(frame.index) == [0, 1, 2, 3]
    assert math.isnan(frame.loc[2, "train/loss"]) and frame.loc[3, "train/loss"] == 0.0


RANKED = """
from tiny_transformer.utils.logging import TrainingLogger
import os, sys
with TrainingLogger("ddp", log_dir=sys.argv[1]) as logger:  # rank comes from $RANK, set by torchrun
    logger.log_metrics({"loss": 1.0 + logger.rank}, step=0, prefix="train/")
"""


def test_under_torchrun_only_rank0_prints_and_every_line_has_its_rank(tmp_path):
    script = tmp_path / "ranked.py"
    script.write_text(RANKED)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [line for line in result.stdout.splitlines() if "train/loss=" in line]
    assert len(printed) == 1 and "step 0 | train/loss=1.0000" in printed[0], result.stdout
    rank0 = strict_loads((tmp_path / "ddp.jsonl").read_text())
    rank1 = strict_loads((tmp_path / "ddp.rank1.jsonl").read_text())
    assert (rank0["rank"], rank0["metrics"]["train/loss"]) == (0, 1.0)
    assert (rank1["rank"], rank1["metrics"]["train/loss"]) == (1, 2.0)


# A write that fails half-way: the file size limit (RLIMIT_FSIZE) stops the write of a long record part-way
# through, as a full disk would. Before the fix, the resumed run's first record was appended onto the cut line
# and the parser dropped both.
CUT_WRITER = """
import resource, signal, sys
from tiny_transformer.utils.logging import TrainingLogger
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
logger = TrainingLogger("cut", log_dir=sys.argv[1], log_to_console=False)
for step in range(3):
    logger.log_metrics({"loss": 3.0 - step}, step=step, prefix="train/")
size = logger.log_file.stat().st_size
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 200, size + 200))
logger.log_metrics({"loss": 0.5, "note": "x" * 2000}, step=3, prefix="train/")  # cut after 200 bytes
"""


def test_resume_after_a_write_cut_half_way_recovers_every_whole_record(tmp_path):
    from tiny_transformer.utils.log_analysis import parse_json_logs
    from tiny_transformer.utils.logging import TrainingLogger

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", CUT_WRITER, str(tmp_path)], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    log = tmp_path / "cut.jsonl"
    data = log.read_bytes()
    assert not data.endswith(b"\n") and data.count(b"\n") == 3  # three whole lines, then 200 bytes of the fourth
    with TrainingLogger("cut", log_dir=tmp_path, log_to_console=False) as resumed:  # --resume opens it again
        resumed.log_start({"seed": 0})
        resumed.log_metrics({"loss": 0.4}, step=4, prefix="train/")
    assert resumed.closed_cut_line
    lines = log.read_text().split("\n")
    assert len(lines) == 7 and lines[-1] == ""  # 3 whole, 1 cut (closed off), 2 new, and the final newline
    for line in lines[:3] + lines[4:6]:
        strict_loads(line)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = parse_json_logs(log)
    assert records.skipped_lines == [4]
    assert [r.get("step") for r in records] == [0, 1, 2, None, 4]
    assert [r["event"] for r in records][-2:] == ["start", "metrics"]
