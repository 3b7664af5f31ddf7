"""The training loop as a user runs it: real `tt-*` processes, signals, torchrun, files on disk."""
import hashlib
import json
import os
import random
import signal
import sys
import subprocess
import time
from pathlib import Path

import pytest
import torch

from helpers import BIN, run
from tiny_transformer.utils.checkpoint import CheckpointManager, read_checkpoint

# A model small enough that a 60-step run takes a few seconds on one thread.
FAST = ["--preset", "tiny", "model.d_model=64", "model.n_layers=2", "model.n_heads=4", "model.d_ff=128",
        "model.max_seq_len=64", "training.batch_size=8", "training.warmup_steps=5", "training.eval_every=20",
        "training.eval_batches=2", "training.sample_tokens=0", "training.sample_every=0", "tracking.backend=none",
        "checkpoint.save_every=5", "logging.console=false",
        "model.dropout=0.1"]  # with dropout, a resume is only exact if the RNG state is restored too


def train_args(tmp_path, name, steps=60, *extra):
    return ["tt-train", *FAST, f"training.max_steps={steps}", f"output_dir={tmp_path}", f"name={name}",
            "--no-progress", *extra]


def final_state(run_dir: Path) -> dict:
    "The newest checkpoint of a run (as its manifest records it), loaded safely."
    return read_checkpoint(CheckpointManager(run_dir / "checkpoints").latest_checkpoint_path())


def param_hash(state: dict) -> str:
    digest = hashlib.sha256()
    for k in sorted(state["model"]):
        digest.update(k.encode())
        digest.update(state["model"][k].numpy().tobytes())
    return digest.hexdigest()


def wait_for_step(log_dir: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    "Block until the run's JSON-lines log mentions a step >= `step`."
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"training exited early: {proc.stderr.read() if proc.stderr else ''}"
        for log in log_dir.glob("*.jsonl"):
            for line in log.read_text().splitlines():
                try:
                    if json.loads(line).get("step", -1) >= step:
                        return
                except json.JSONDecodeError:
                    pass
        time.sleep(0.1)
    raise TimeoutError(f"no step {step} in {log_dir} after {timeout}s")


def start(args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([str(BIN / args[0]), *args[1:]], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    "One uninterrupted 60-step run, shared by the resume tests."
    tmp = tmp_path_factory.mktemp("reference")
    result = run(train_args(tmp, "straight"), timeout=300)
    assert result.returncode == 0, result.stderr
    return final_state(tmp / "straight")


def test_sigkill_then_resume_auto_is_bit_identical(tmp_path, reference):
    kill_at = random.Random().randint(12, 45)
    proc = start(train_args(tmp_path, "killed"))
    wait_for_step(tmp_path / "killed", kill_at, proc)
    proc.kill()
    proc.wait(timeout=30)
    resumed = run(train_args(tmp_path, "killed", 60, "--resume", "auto"), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    state = final_state(tmp_path / "killed")
    assert state["step"] == reference["step"] == 60
    assert param_hash(state) == param_hash(reference), f"killed near step {kill_at}: parameters differ"


def test_sigterm_saves_an_emergency_checkpoint_then_resume_matches(tmp_path, reference):
    proc = start(train_args(tmp_path, "preempted"))
    wait_for_step(tmp_path / "preempted", 23, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err  # 128 + SIGTERM: a scheduler can tell it from a finished run
    manifest = (tmp_path / "preempted" / "checkpoints" / "manifest.json").read_text()
    assert "emergency" in manifest
    resumed = run(train_args(tmp_path, "preempted", 60, "--resume", "auto"), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert param_hash(final_state(tmp_path / "preempted")) == param_hash(reference)


def test_bad_override_exits_2_and_writes_nothing(tmp_path):
    for bad, key in [("model.d_modl=64", "d_modl"), ("training.learning_rate=fast", "learning_rate"),
                     ("model.n_heads=5", "n_heads")]:
        result = run(["tt-train", "--preset", "tiny", f"output_dir={tmp_path}", "name=bad", bad], timeout=60)
        assert result.returncode == 2, (bad, result.stderr)
        assert key in result.stderr
    assert not (tmp_path / "bad").exists()


def test_existing_run_is_not_overwritten(tmp_path):
    first = run(train_args(tmp_path, "once", 10), timeout=120)
    assert first.returncode == 0, first.stderr
    again = run(train_args(tmp_path, "once", 10), timeout=120)
    assert again.returncode == 2 and "--resume auto" in again.stderr


def test_injected_faults_are_survived(tmp_path):
    env = {"TT_INJECT_FAULTS": "nan@7,oom@12"}
    result = run(train_args(tmp_path, "faults", 30), timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(l) for l in next((tmp_path / "faults").glob("*.jsonl")).read_text().splitlines() if l.strip()]
    messages = " | ".join(str(l.get("message", "")) for l in lines)
    assert "non-finite" in messages and "out of memory" in messages
    assert final_state(tmp_path / "faults")["step"] == 30


def test_torchrun_two_processes_match_one(tmp_path):
    # Without dropout: each rank draws dropout masks for its own rows, which cannot match one process's masks.
    single = run(train_args(tmp_path, "single", 20, "model.dropout=0.0"), timeout=300)
    assert single.returncode == 0, single.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(BIN / "tt-train"),
                *train_args(tmp_path, "ddp", 20, "model.dropout=0.0")[1:]]
    ddp = run(torchrun, timeout=300)
    assert ddp.returncode == 0, ddp.stderr
    a, b = final_state(tmp_path / "single"), final_state(tmp_path / "ddp")
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], atol=2e-4, rtol=1e-3)
    # Only rank 0 wrote checkpoints; each rank wrote its own log, and every line says which rank it is.
    logs = sorted(p.name for p in (tmp_path / "ddp").glob("*.jsonl"))
    assert len(logs) == 2, logs


def test_evaluate_and_generate_from_a_checkpoint(tmp_path):
    assert run(train_args(tmp_path, "small", 20), timeout=120).returncode == 0
    ev = run(["tt-evaluate", "--checkpoint", str(tmp_path / "small"), "--json"], timeout=120)
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout.strip().splitlines()[-1])
    assert result["val/loss"] < 4.2 and result["step"] == 20
    gen = run(["tt-generate", "--checkpoint", str(tmp_path / "small"), "--prompt", "ROMEO:", "--max-new-tokens", "30"],
              timeout=120)
    assert gen.returncode == 0, gen.stderr
    assert gen.stdout.startswith("ROMEO:") and len(gen.stdout.strip()) >= 30
    bad = run(["tt-generate", "--checkpoint", str(tmp_path / "nope.pt")], timeout=60)
    assert bad.returncode == 2 and "not found" in bad.stderr
    for cmd in ("tt-evaluate", "tt-generate"):
        assert run([cmd, "--help"], timeout=60).returncode == 0
