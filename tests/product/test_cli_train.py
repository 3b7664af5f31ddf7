"""`tt-train`, `tt-evaluate` and `tt-generate` as a user runs them: real processes, from --help to the end-of-run
message, and a table of hostile inputs that must each exit 2 with a message naming the input (never a traceback)."""
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from helpers import BIN, run

SMALL = ["--preset", "tiny", "model.d_model=64", "model.n_layers=1", "model.max_seq_len=32", "training.batch_size=4",
         "training.warmup_steps=2", "training.eval_batches=2", "--no-progress"]


def tt_train(tmp_path, name, steps=10, *extra, **kwargs):
    return run(["tt-train", *SMALL, f"training.max_steps={steps}", f"training.eval_every={steps}",
                f"output_dir={tmp_path}", f"name={name}", *extra], timeout=300, **kwargs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    "A finished 10-step run directory (tensorboard tracking, a sample at the end)."
    tmp = tmp_path_factory.mktemp("trained")
    result = tt_train(tmp, "run", 10, "training.sample_tokens=20", "tracking.backend=tensorboard")
    assert result.returncode == 0, result.stderr
    (tmp / "stdout.txt").write_text(result.stdout)
    return tmp / "run"


def test_help():
    result = run(["tt-train", "--help"], timeout=60)
    assert result.returncode == 0
    for flag in ("usage: tt-train", "--preset", "--config", "--resume", "--print-config", "KEY=VALUE"):
        assert flag in result.stdout
    for cmd in ("tt-evaluate", "tt-generate"):
        assert run([cmd, "--help"], timeout=60).returncode == 0


def test_print_config_writes_nothing(tmp_path):
    result = run(["tt-train", "--preset", "tiny", "training.max_steps=777", f"output_dir={tmp_path}", "--print-config"],
                 timeout=60)
    assert result.returncode == 0, result.stderr
    assert "max_steps: 777" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_end_of_run_message_rounds_numbers_and_its_commands_work(trained):
    out = (trained.parent / "stdout.txt").read_text()
    report = out.split("-" * 60)[-1]
    head = report.strip().splitlines()[0]
    assert head.startswith("completed: step 10, val loss ")
    val = head.split("val loss ")[1].split(" ")[0]
    assert len(val.split(".")[1]) == 3, head  # rounded for people: 3 decimals
    lines = {l.split(":")[0].strip(): l.split(":", 1)[1].strip() for l in report.strip().splitlines()[1:]}
    assert Path(lines["loss plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The tensorboard command, as printed (plus a free port): it serves this run's loss curves.
    tb_cmd = shlex.split(lines["curves now"].split("   (")[0])
    assert tb_cmd[:3] == ["tensorboard", "--logdir", str(trained)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = BIN / "tensorboard" if (BIN / "tensorboard").exists() else shutil.which("tensorboard")
    assert exe, "tensorboard is not installed (the tracking extra)"
    proc = subprocess.Popen([str(exe), *tb_cmd[1:], "--port", str(port), "--host", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, tags = time.time() + 90, {}
        while time.time() < deadline and not any("val/loss" in t for t in tags.values()):
            time.sleep(1)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/tags", timeout=5) as r:
                    tags = json.loads(r.read())
            except OSError:
                pass
        run_tags = next(iter(tags.values()), {})
        assert "train/loss" in run_tags and "val/loss" in run_tags, tags
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # The sample command, as printed.
    gen = run(shlex.split(lines["sample"]) + ["--max-new-tokens", "10"], timeout=120)
    assert gen.returncode == 0 and gen.stdout.startswith("ROMEO:"), gen.stderr


def test_interrupted_run_exits_130_and_says_how_to_continue(tmp_path):
    args = [str(BIN / "tt-train"), *SMALL, "training.max_steps=100000", "training.log_every=5",
            "training.sample_tokens=0", "tracking.backend=none", f"output_dir={tmp_path}", "name=stop"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    log = tmp_path / "stop" / "stop.jsonl"
    deadline = time.time() + 120
    while not (log.is_file() and '"step": 10' in log.read_text()) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "emergency checkpoint saved" in out and "--resume auto" in out
    ends = [json.loads(l) for l in log.read_text().splitlines() if '"event": "end"' in l]
    assert ends[-1]["status"] == "interrupted"


# --- hostile inputs ------------------------------------------------------------------------------------------------
def _files(tmp_path: Path, trained: Path) -> dict:
    "Bad files for the table below."
    binary = tmp_path / "random.bin"
    binary.write_bytes(os.urandom(4096) + b"\xff\xfe")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    short = tmp_path / "short.txt"
    short.write_text("To be.\n")
    alien = tmp_path / "alien.txt"
    alien.write_text("§¤¶ " * 400)
    fake = tmp_path / "fake.pt"
    fake.write_bytes(os.urandom(2048))
    state = torch.load(next((trained / "checkpoints").glob("checkpoint_*.pt")), weights_only=True)
    state["model_config"] = {**state["model_config"], "d_model": 32}
    mismatched = tmp_path / "mismatched.pt"
    torch.save(state, mismatched)
    (tmp_path / "no-run").mkdir()
    return {"BIN": binary, "EMPTY": empty, "SHORT": short, "ALIEN": alien, "FAKE": fake, "MISMATCHED": mismatched,
            "RUN": trained, "NORUN": tmp_path / "no-run", "MISSING": tmp_path / "missing.pt"}


HOSTILE = {  # id: (command, arguments, words the message must contain)
    "train: prompt outside the vocabulary": ("tt-train", ["training.sample_prompt=ZZ§", "training.sample_tokens=5"],
                                             ["training.sample_prompt", "§"]),
    "train: corpus missing": ("tt-train", ["data.path={MISSING}"], ["data.path", "missing.pt"]),
    "train: corpus binary": ("tt-train", ["data.path={BIN}"], ["data.path", "UTF-8"]),
    "train: corpus empty": ("tt-train", ["data.path={EMPTY}"], ["data.path"]),
    "train: corpus shorter than the context": ("tt-train", ["data.path={SHORT}"], ["model.max_seq_len"]),
    "train: resume from a missing file": ("tt-train", ["--resume", "{MISSING}"], ["--resume", "missing.pt", "--resume auto"]),
    "train: device not on this machine": ("tt-train", ["device=cuda"], ["device", "not available"]),
    "evaluate: checkpoint missing": ("tt-evaluate", ["--checkpoint", "{MISSING}"], ["--checkpoint", "not found"]),
    "evaluate: not a checkpoint": ("tt-evaluate", ["--checkpoint", "{FAKE}"], ["fake.pt"]),
    "evaluate: folder without checkpoints": ("tt-evaluate", ["--checkpoint", "{NORUN}"], ["--checkpoint", "no checkpoint"]),
    "evaluate: config does not match weights": ("tt-evaluate", ["--checkpoint", "{MISMATCHED}"], ["does not match its stored weights"]),
    "evaluate: --data missing": ("tt-evaluate", ["--checkpoint", "{RUN}", "--data", "{MISSING}"], ["--data", "missing.pt"]),
    "evaluate: --data binary": ("tt-evaluate", ["--checkpoint", "{RUN}", "--data", "{BIN}"], ["--data", "UTF-8"]),
    "evaluate: --data in another alphabet": ("tt-evaluate", ["--checkpoint", "{RUN}", "--data", "{ALIEN}"], ["--data", "vocabulary"]),
    "evaluate: --data too short": ("tt-evaluate", ["--checkpoint", "{RUN}", "--data", "{SHORT}"], ["--data"]),
    "evaluate: --batches -1": ("tt-evaluate", ["--checkpoint", "{RUN}", "--batches", "-1"], ["--batches", ">= 1"]),
    "evaluate: --batches 0": ("tt-evaluate", ["--checkpoint", "{RUN}", "--batches", "0"], ["--batches", ">= 1"]),
    "evaluate: --device tpu": ("tt-evaluate", ["--checkpoint", "{RUN}", "--device", "tpu"], ["--device", "'tpu'", "cpu"]),
    "evaluate: --device cuda:3": ("tt-evaluate", ["--checkpoint", "{RUN}", "--device", "cuda:3"], ["--device", "cuda:3"]),
    "generate: temperature 1e-40": ("tt-generate", ["--checkpoint", "{RUN}", "--temperature", "1e-40"], ["--temperature", "0.001"]),
    "generate: temperature 0": ("tt-generate", ["--checkpoint", "{RUN}", "--temperature", "0"], ["--temperature"]),
    "generate: temperature nan": ("tt-generate", ["--checkpoint", "{RUN}", "--temperature", "nan"], ["--temperature"]),
    "generate: --top-k -1": ("tt-generate", ["--checkpoint", "{RUN}", "--top-k", "-1"], ["--top-k", ">= 0"]),
    "generate: --top-p 1.5": ("tt-generate", ["--checkpoint", "{RUN}", "--top-p", "1.5"], ["--top-p", "(0, 1]"]),
    "generate: --max-new-tokens -5": ("tt-generate", ["--checkpoint", "{RUN}", "--max-new-tokens", "-5"], ["--max-new-tokens"]),
    "generate: prompt outside the vocabulary": ("tt-generate", ["--checkpoint", "{RUN}", "--prompt", "§§"], ["--prompt", "§"]),
    "generate: empty prompt": ("tt-generate", ["--checkpoint", "{RUN}", "--prompt", ""], ["--prompt", "empty"]),
    "generate: --device tpu": ("tt-generate", ["--checkpoint", "{RUN}", "--device", "tpu"], ["--device", "'tpu'"]),
    "generate: config does not match weights": ("tt-generate", ["--checkpoint", "{MISMATCHED}"], ["does not match its stored weights"]),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_input_exits_2_naming_it(case, tmp_path, trained):
    cmd, args, words = HOSTILE[case]
    files = _files(tmp_path, trained)
    args = [a.format(**files) for a in args]
    if cmd == "tt-train":
        args = [*SMALL, "training.max_steps=5", "training.eval_every=5", f"output_dir={tmp_path / 'out'}", "name=x", *args]
    result = run([cmd, *args], timeout=120)
    assert result.returncode == 2, (case, result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, (case, word, result.stderr)
    if cmd == "tt-train":
        assert not (tmp_path / "out" / "x" / "config.yaml").exists()  # refused before anything was written


# --- resume decisions -------------------------------------------------------------------------------------------
def test_architecture_change_on_resume_is_refused_before_anything_is_written(tmp_path):
    assert tt_train(tmp_path, "r", 10, "tracking.backend=none").returncode == 0
    run_dir = tmp_path / "r"
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"}
    result = tt_train(tmp_path, "r", 20, "model.d_model=128", "tracking.backend=none", "--resume", "auto")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "model.d_model" in result.stderr and "64" in result.stderr and "128" in result.stderr
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"}
    assert after == before  # config.yaml, the log: untouched


def test_changed_settings_on_resume_are_shown_and_logged(tmp_path):
    assert tt_train(tmp_path, "r", 10, "tracking.backend=none").returncode == 0
    result = tt_train(tmp_path, "r", 16, "tracking.backend=none", "training.learning_rate=1e-3", "--resume", "auto")
    assert result.returncode == 0, result.stderr
    assert "Resuming with changed settings" in result.stdout and "training.learning_rate" in result.stdout
    records = [json.loads(l) for l in (tmp_path / "r" / "r.jsonl").read_text().splitlines()]
    decisions = [r for r in records if str(r.get("message", "")).startswith("resume:")]
    assert [r["message"] for r in decisions] == ["resume: selected",
                                                 "resume: settings differ from the checkpoint's run"]
    assert decisions[0]["event"] == "resume_selected" and decisions[0]["step"] == 10
    assert decisions[1]["changes"]["training.learning_rate"] == [0.002, 0.001]


def test_resume_with_only_damaged_checkpoints_exits_2_listing_them(tmp_path):
    assert tt_train(tmp_path, "r", 10, "tracking.backend=none", "checkpoint.save_every=5").returncode == 0
    damaged = sorted((tmp_path / "r" / "checkpoints").glob("*.pt"))
    for path in damaged:
        path.write_bytes(path.read_bytes()[:-100])
    result = tt_train(tmp_path, "r", 20, "tracking.backend=none", "--resume", "auto")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "none is usable" in result.stderr
    for path in damaged:
        assert path.name in result.stderr


def test_a_second_trainer_in_the_same_run_directory_is_refused(tmp_path):
    args = [str(BIN / "tt-train"), *SMALL, "training.max_steps=100000", "training.sample_tokens=0",
            "tracking.backend=none", f"output_dir={tmp_path}", "name=busy"]
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        lock = tmp_path / "busy" / ".lock"
        deadline = time.time() + 120
        while not (lock.is_file() and lock.read_text().strip()) and time.time() < deadline:
            time.sleep(0.2)
        second = tt_train(tmp_path, "busy", 10, "--resume", "auto")
        assert second.returncode == 2, second.stderr
        assert f"pid {first.pid}" in second.stderr and "another name" in second.stderr
    finally:
        first.kill()  # SIGKILL: the lock is left "held" in the file, but the kernel has released it
        first.wait(timeout=30)
    third = tt_train(tmp_path, "busy", 10, "tracking.backend=none", "--resume", "auto")
    assert third.returncode == 0, third.stderr
    log = (tmp_path / "busy" / "busy.jsonl").read_text()
    assert "took over the lock" in log and str(first.pid) in log


def test_evaluate_on_a_run_directory_deletes_nothing(trained):
    leftover = trained / "checkpoints" / ".checkpoint_99999999.pt.tmp-12345-1"
    leftover.write_bytes(b"a trainer's half-written checkpoint")
    try:
        result = run(["tt-evaluate", "--checkpoint", str(trained)], timeout=120)
        assert result.returncode == 0, result.stderr
        assert leftover.exists()
    finally:
        leftover.unlink(missing_ok=True)
