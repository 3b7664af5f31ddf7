"""Checkpoints under real failures: processes killed mid-save, full filesystems, signals, a new process resuming.

Each scenario runs a small script in a child process (one thread, as bit-exactness needs), then checks the
folder it left with a fresh CheckpointManager in this process.
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch

from helpers import ROOT, corpus_path
from tiny_transformer.core import TMP_MARKER
from tiny_transformer.utils.checkpoint import (CheckpointManager, CheckpointSaveError, NoUsableCheckpointError,
                                               UnsafeCheckpointError, load_checkpoint)

# A tiny model on synthetic text: the failure tests need files, not learning.
PRELUDE = """
import json, os, signal, sys, time
import torch, torch.nn.functional as F
from tiny_transformer.data import RandomWindowSampler, prepare_corpus
from tiny_transformer.model import TinyTransformerLM
from tiny_transformer.utils.checkpoint import CheckpointManager, CheckpointSaveError, GracefulShutdown
torch.set_num_threads(1)
torch.manual_seed(0)
corpus = prepare_corpus(text="to be or not to be, that is the question. " * 200)
model = TinyTransformerLM(corpus.vocab_size, d_model=32, n_heads=2, n_layers=2, d_ff=64, max_seq_len=16)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
sampler = RandomWindowSampler(corpus.train, block_size=16, batch_size=4, seed=0)
run_dir = sys.argv[1]

def train_step():
    x, y = sampler.sample()
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()
"""


def child_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}


def start(script: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(script), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(), cwd=ROOT)


def run_script(script: str, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(script), *map(str, args)],
                          capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=timeout)


def wait_for_line(proc: subprocess.Popen, marker: str, timeout: float = 120) -> list[str]:
    "Read the child's stdout until a line starts with `marker`; fail with its stderr if it exits first."
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            proc.wait(10)
            raise AssertionError(f"child exited ({proc.returncode}) before {marker!r}:\n{proc.stderr.read()[-3000:]}")
        lines.append(line.strip())
        if line.startswith(marker):
            return lines
    proc.kill()
    raise AssertionError(f"timed out waiting for {marker!r}; got {lines}")


def check_folder_is_sound(folder: Path) -> CheckpointManager:
    "The manifest parses, lists only complete files that load and match their hashes; returns a new manager."
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["checkpoints"]:
        ckpt = load_checkpoint(folder / entry["file"])
        assert ckpt["step"] == entry["step"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        manager = CheckpointManager(folder, keep_best_n=2)
        manager.remove_temp_files()  # what the next writer does first; the killed process's files go
    for entry in manager.manifest["checkpoints"]:
        assert manager._verify(entry) is None, entry
    assert not [p.name for p in folder.iterdir() if TMP_MARKER in p.name], "temporary files survived the restart"
    return manager


# --- SIGKILL in the middle of a save -------------------------------------------------------------------------

SAVE_THEN_HANG = """
manager = CheckpointManager(run_dir, keep_best_n=2)
for step, val_loss in [(1, 3.0), (2, 2.0), (3, 2.5)]:
    train_step()
    manager.save(model, optimizer, step=step, val_loss=val_loss, sampler=sampler)
    print("SAVED", step, flush=True)

where = sys.argv[2]
if where == "checkpoint-write":  # torch.save has written half of the bytes when the kill lands
    real_save = torch.save
    def slow_save(obj, f, *args, **kwargs):
        import io
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.flush()
        print("IN_SAVE", flush=True)
        time.sleep(120)
    torch.save = slow_save
elif where == "manifest-rename":  # the checkpoint is in place, the new manifest is not yet
    real_replace = os.replace
    def slow_replace(src, dst):
        if str(dst).endswith("manifest.json"):
            print("IN_SAVE", flush=True)
            time.sleep(120)
        return real_replace(src, dst)
    os.replace = slow_replace
train_step()
manager.save(model, optimizer, step=4, val_loss=1.0, sampler=sampler)
print("UNREACHABLE", flush=True)
"""


@pytest.mark.parametrize("where", ["checkpoint-write", "manifest-rename"])
def test_sigkill_during_save_keeps_earlier_checkpoints_and_resume_works(tmp_path, where):
    folder = tmp_path / "ckpt"
    proc = start(SAVE_THEN_HANG, folder, where)
    try:
        lines = wait_for_line(proc, "IN_SAVE")
        manifest_before = (folder / "manifest.json").read_bytes()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert lines[:3] == ["SAVED 1", "SAVED 2", "SAVED 3"]
    assert (folder / "manifest.json").read_bytes() == manifest_before  # the kill changed nothing the manifest says
    if where == "checkpoint-write":
        assert [p.name for p in folder.iterdir() if TMP_MARKER in p.name], "the kill should have left a temp file"
        assert not (folder / "checkpoint_00000004.pt").exists()

    manager = check_folder_is_sound(folder)
    # keep_best_n=2 kept steps 2 (2.0) and 3 (2.5, also the newest); step 4 never made it into the manifest.
    assert [e["step"] for e in manager.manifest["checkpoints"]] == [2, 3]
    resumed = run_script("""
        manager = CheckpointManager(run_dir, keep_best_n=2)
        manager.remove_temp_files()
        state = manager.resume_from("auto", model, optimizer, sampler=sampler)
        train_step()
        path = manager.save(model, optimizer, step=state["step"] + 1, val_loss=1.0, sampler=sampler)
        print(json.dumps({"resumed_from": state["step"], "saved": path.name, "removed": manager.removed_temp_files}))
    """, folder)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert report["resumed_from"] == 3 and report["saved"] == "checkpoint_00000004.pt"
    assert [e["step"] for e in check_folder_is_sound(folder).manifest["checkpoints"]] == [2, 4]


# --- a full disk --------------------------------------------------------------------------------------------

def _assert_failed_cleanly(folder: Path, manifest_before: bytes, error: str, reason: str):
    assert reason in error and "untouched" in error, error
    assert (folder / "manifest.json").read_bytes() == manifest_before
    assert not [p.name for p in folder.iterdir() if TMP_MARKER in p.name]
    assert [e["step"] for e in check_folder_is_sound(folder).manifest["checkpoints"]] == [1, 2]


@pytest.fixture
def small_tmpfs(tmp_path):
    "A 1 MiB tmpfs, where this machine lets us mount one (root on Linux); skipped elsewhere."
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_save_into_a_full_tmpfs_fails_cleanly(small_tmpfs):
    torch.manual_seed(0)
    from tiny_transformer.model import TinyTransformerLM
    model = TinyTransformerLM(65, d_model=32, n_heads=2, n_layers=2, d_ff=64, max_seq_len=16)  # ~90 kB per file
    manager = CheckpointManager(small_tmpfs, keep_best_n=2)
    manager.save(model, step=1, val_loss=2.0)
    manager.save(model, step=2, val_loss=1.5)
    manifest_before = (small_tmpfs / "manifest.json").read_bytes()
    with pytest.raises(CheckpointSaveError) as failure:
        manager.save(model, step=3, val_loss=1.0, activations=torch.zeros(1 << 20))  # +4 MB: does not fit
    _assert_failed_cleanly(small_tmpfs, manifest_before, str(failure.value), "No space left on device")
    assert [e["step"] for e in manager.manifest["checkpoints"]] == [1, 2]
    manager.save(model, step=3, val_loss=1.0)  # once there is room again, saving works
    assert [e["step"] for e in manager.manifest["checkpoints"]] == [2, 3]


def test_save_over_the_file_size_limit_fails_cleanly(tmp_path):
    # RLIMIT_FSIZE makes the kernel refuse writes past a size: a real I/O error, no root needed.
    folder = tmp_path / "ckpt"
    result = run_script("""
        import resource
        manager = CheckpointManager(run_dir, keep_best_n=2)
        manager.save(model, step=1, val_loss=2.0)
        manager.save(model, step=2, val_loss=1.5)
        manifest_before = open(os.path.join(run_dir, "manifest.json")).read()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
        try:
            manager.save(model, optimizer, step=3, val_loss=1.0, activations=torch.zeros(1 << 20))
            print(json.dumps({"error": None}))
        except CheckpointSaveError as e:
            print(json.dumps({"error": str(e), "manifest_before": manifest_before}))
    """, folder)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    error = report["error"]
    assert error is not None, "the save over the limit should have failed"
    manifest_before = report["manifest_before"].encode()
    _assert_failed_cleanly(folder, manifest_before, error, "File too large")


# --- signals ------------------------------------------------------------------------------------------------

TRAIN_UNTIL_SIGNAL = """
manager = CheckpointManager(run_dir, keep_best_n=2)
with GracefulShutdown() as shutdown:
    for step in range(1, 1000):
        train_step()
        print("STEP", step, flush=True)
        time.sleep(0.5)  # a slow step, so that signals land inside it
        if shutdown.requested:
            path = manager.save(model, optimizer, step=step, kind="emergency", sampler=sampler)
            print("EMERGENCY", path.name, shutdown.signal_name, flush=True)
            break
print("DONE", flush=True)
sys.exit(shutdown.exit_code)  # 130 after SIGINT, 143 after SIGTERM: a scheduler can tell it from a finished run
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_first_signal_finishes_the_step_saves_and_exits_as_interrupted(tmp_path, sig):
    folder = tmp_path / "ckpt"
    proc = start(TRAIN_UNTIL_SIGNAL, folder)
    try:
        wait_for_line(proc, "STEP 3")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, (proc.returncode, err[-3000:])  # 130 SIGINT, 143 SIGTERM; 0 means "finished"
    lines = out.strip().splitlines()
    assert lines[-1] == "DONE"
    emergency = [line for line in lines if line.startswith("EMERGENCY")]
    assert len(emergency) == 1 and emergency[0].endswith(signal.Signals(sig).name)
    assert "finishing the current step" in err
    step = int(emergency[0].split()[1].split("_")[1].split(".")[0])
    assert step in (3, 4)  # the step that was running when the signal came
    manager = check_folder_is_sound(folder)
    assert manager.resolve_resume("auto").name == f"emergency_{step:08d}.pt"
    assert load_checkpoint(manager.resolve_resume("auto"))["kind"] == "emergency"


def test_second_sigint_exits_at_once_without_saving(tmp_path):
    folder = tmp_path / "ckpt"
    proc = start(TRAIN_UNTIL_SIGNAL, folder)
    try:
        wait_for_line(proc, "STEP 2")
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)  # still inside the step's sleep
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert "KeyboardInterrupt: second SIGINT" in err
    assert "EMERGENCY" not in out and "DONE" not in out
    assert not list(folder.glob("*.pt"))


# --- bit-exact resume in a new process ----------------------------------------------------------------------

RESUME_RUN = """
import hashlib, math
from tiny_transformer.data import load_text
torch.manual_seed(0)
corpus = prepare_corpus(text=load_text()[:100_000])
model = TinyTransformerLM(corpus.vocab_size, d_model=32, n_heads=2, n_layers=2, d_ff=64, max_seq_len=32, dropout=0.2)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
total, stop_at, mode = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
warmup = 3
cosine = lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup)))
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
sampler = RandomWindowSampler(corpus.train, block_size=32, batch_size=8, seed=1)
manager = CheckpointManager(run_dir)
start = 0
if mode == "resume":
    start = manager.resume_from("auto", model, optimizer, scheduler, sampler=sampler)["step"]
elif mode == "resume-without-rng":
    start = manager.resume_from("auto", model, optimizer, scheduler, restore_rng=False)["step"]
losses = {}
for step in range(start + 1, total + 1):
    x, y = sampler.sample()
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    losses[step] = loss.item()
    if step == stop_at:
        manager.save(model, optimizer, scheduler, step, val_loss=loss.item(), sampler=sampler, tokenizer=corpus.tokenizer)
        break
digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in model.state_dict().values())).hexdigest()
print(json.dumps({"losses": losses, "params": digest}))
"""


def test_resume_in_a_new_process_is_bit_exact(tmp_path):
    corpus_path()  # needs TT_DATA
    def go(folder, stop_at, mode):
        result = run_script(RESUME_RUN, folder, 16, stop_at, mode)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    straight = go(tmp_path / "a", 0, "fresh")
    first = go(tmp_path / "b", 8, "fresh")
    second = go(tmp_path / "b", 0, "resume")
    assert list(first["losses"]) == [str(s) for s in range(1, 9)]
    assert list(second["losses"]) == [str(s) for s in range(9, 17)]
    assert {**first["losses"], **second["losses"]} == straight["losses"]
    assert second["params"] == straight["params"]
    # Without the sampler and RNG states the resumed run is a different run from its first step on.
    diverged = go(tmp_path / "b", 0, "resume-without-rng")
    assert diverged["losses"]["9"] != straight["losses"]["9"]
    assert diverged["params"] != straight["params"]


# --- hostile files ------------------------------------------------------------------------------------------

class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path(self.marker).write_text, ("payload ran",))


def test_hostile_pickles_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    folder = tmp_path / "ckpt"
    folder.mkdir()
    torch.save({"model": {}, "step": 1, "x": _Payload(marker)}, folder / "checkpoint_00000001.pt")
    with open(tmp_path / "raw.pkl", "wb") as f:
        pickle.dump({"model": _Payload(marker)}, f, protocol=2)
    for path in (folder / "checkpoint_00000001.pt", tmp_path / "raw.pkl"):
        with pytest.raises(UnsafeCheckpointError, match="nothing in it was run"):
            load_checkpoint(path)
    # A manager rebuilding its manifest from such a folder refuses the file too.
    with pytest.warns(UserWarning, match="Not managing checkpoint_00000001.pt"):
        manager = CheckpointManager(folder)
    assert manager.manifest["checkpoints"] == []
    assert not marker.exists()


# --- a reader opening a folder while a trainer writes into it ---------------------------------------------

WRITE_SLOWLY = """
manager = CheckpointManager(run_dir, keep_best_n=2)
manager.save(model, optimizer, step=1, val_loss=3.0, sampler=sampler)
go = os.path.join(run_dir, "GO")
real_save = torch.save
def slow_save(obj, f, *args, **kwargs):  # half the bytes, then wait until the test says go
    import io
    buf = io.BytesIO()
    real_save(obj, buf, *args, **kwargs)
    half = len(buf.getvalue()) // 2
    f.write(buf.getvalue()[:half])
    f.flush()
    print("IN_SAVE", flush=True)
    while not os.path.exists(go):
        time.sleep(0.05)
    f.write(buf.getvalue()[half:])
torch.save = slow_save
train_step()
path = manager.save(model, optimizer, step=2, val_loss=2.0, sampler=sampler)
print("SAVED", path.name, flush=True)
"""

OPEN_AS_READER = """
import sys, warnings
from tiny_transformer.utils.checkpoint import CheckpointManager
warnings.simplefilter("error")  # a reader must not even warn about tidying up
manager = CheckpointManager(sys.argv[1])
print(manager.latest_checkpoint_path().name, manager.remove_temp_files())
"""


def test_a_reader_opening_the_folder_never_deletes_a_save_in_progress(tmp_path):
    "tt-evaluate --checkpoint RUN_DIR opens a manager while the trainer writes: the half-written file survives."
    folder = tmp_path / "ckpt"
    proc = start(WRITE_SLOWLY, folder)
    try:
        wait_for_line(proc, "IN_SAVE")
        temp = [p for p in folder.iterdir() if TMP_MARKER in p.name]
        assert len(temp) == 1, list(folder.iterdir())
        CheckpointManager(folder)  # a reader in this process
        other = subprocess.run([sys.executable, "-c", OPEN_AS_READER, str(folder)], capture_output=True, text=True,
                               env=child_env(), cwd=ROOT, timeout=120)  # and in another one, cleanup included
        assert other.returncode == 0, other.stderr[-3000:]
        assert other.stdout.split() == ["checkpoint_00000001.pt", "[]"], other.stdout
        assert temp[0].exists(), "a reader deleted the file a running trainer is writing"
        (folder / "GO").write_text("go")
        lines = wait_for_line(proc, "SAVED")
        proc.wait(60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and lines[-1] == "SAVED checkpoint_00000002.pt", (proc.returncode, lines)
    assert [e["step"] for e in check_folder_is_sound(folder).manifest["checkpoints"]] == [1, 2]


RESUME_ALL_DAMAGED = """
manager = CheckpointManager(run_dir)
try:
    manager.resume_from("auto", model, optimizer, sampler=sampler)
except Exception as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e), "events": manager.last_resume.events}))
else:
    print(json.dumps({"error": None}))
"""


def test_resume_auto_with_only_damaged_checkpoints_stops_and_says_why(tmp_path):
    "It used to start again from step 0 without a word; now it names each file and what is wrong with it."
    folder = tmp_path / "ckpt"
    first = run_script("""
        manager = CheckpointManager(run_dir)
        for step in (1, 2):
            train_step()
            manager.save(model, optimizer, step=step, val_loss=3.0 - step, sampler=sampler)
    """, folder)
    assert first.returncode == 0, first.stderr[-3000:]
    (folder / "checkpoint_00000002.pt").write_bytes(b"\x80\x02" + os.urandom(4000))  # overwritten with junk
    one = folder / "checkpoint_00000001.pt"
    one.write_bytes(one.read_bytes()[:2000])  # truncated
    result = run_script(RESUME_ALL_DAMAGED, folder)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["error"] == NoUsableCheckpointError.__name__, report
    assert "checkpoint_00000002.pt: its size is" in report["message"] or "SHA-256" in report["message"], report
    assert "checkpoint_00000001.pt" in report["message"]
    assert [e["event"] for e in report["events"]] == ["resume_skipped", "resume_skipped"]


# --- hostile checkpoint files: errors that blame the right thing --------------------------------------------

MAKE_FILES = """
good = save_checkpoint(os.path.join(run_dir, "good.pt"), model, tokenizer=corpus.tokenizer)
state = torch.load(good, weights_only=True)
state["model_config"]["d_model"] = 64          # the config says 64, the weights are 32
torch.save(state, os.path.join(run_dir, "config_weights_mismatch.pt"))
state = torch.load(good, weights_only=True)
state["model_config"]["d_modell"] = 32         # a key the model does not take
torch.save(state, os.path.join(run_dir, "config_unknown_key.pt"))
with open(os.path.join(run_dir, "random_bytes.pt"), "wb") as f:
    f.write(bytes([0x80, 0x02]) + os.urandom(5000))  # starts like a pickle, is not one
print("MADE")
"""

HOSTILE_CHECKPOINTS = [  # (file, extra arguments, what the message must say)
    ("config_weights_mismatch.pt", [], "does not match its stored weights"),
    ("config_unknown_key.pt", [], "cannot build a model"),
    ("random_bytes.pt", [], "not a checkpoint (damaged or not a torch file)"),
    ("good.pt", ["--device", "cuda:7"], "--device 'cuda:7'"),  # tt-evaluate checks the device before loading
]


@pytest.mark.parametrize("name,extra,expected", HOSTILE_CHECKPOINTS, ids=[h[0] + " ".join(h[1]) for h in HOSTILE_CHECKPOINTS])
def test_tt_evaluate_names_what_is_wrong_with_a_checkpoint(tmp_path, name, extra, expected):
    "Exit 2 and one line that names the real problem; never a traceback, never 'unsafe pickle' for junk."
    if extra and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    made = run_script("from tiny_transformer.utils.checkpoint import save_checkpoint\n" + MAKE_FILES, tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    result = subprocess.run([str(Path(sys.executable).parent / "tt-evaluate"), "--checkpoint", str(tmp_path / name),
                             "--data", str(corpus_path()), *extra], capture_output=True, text=True, env=child_env(),
                            cwd=ROOT, timeout=300)
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "unsafe" not in result.stderr.lower() and "pickled Python objects" not in result.stderr


# --- emergency checkpoints do not pile up -------------------------------------------------------------------

def test_emergency_checkpoints_are_pruned_once_superseded_across_restarts(tmp_path):
    "Each 'night' a preempted process writes an emergency save, the next one resumes and saves on: one stays."
    folder = tmp_path / "ckpt"
    for night in range(3):
        result = run_script("""
            manager = CheckpointManager(run_dir, keep_best_n=1)
            manager.remove_temp_files()
            state = manager.resume_from("auto", model, optimizer, sampler=sampler)
            step = state["step"] if state else 0
            train_step()
            manager.save(model, optimizer, step=step + 10, val_loss=3.0 - step / 100, sampler=sampler)
            train_step()
            manager.save(model, optimizer, step=step + 15, kind="emergency", sampler=sampler)
        """, folder)
        assert result.returncode == 0, result.stderr[-3000:]
    files = sorted(p.name for p in folder.glob("*.pt"))
    assert [f for f in files if f.startswith("emergency_")] == ["emergency_00000045.pt"], files
    manager = check_folder_is_sound(folder)
    assert manager.latest_checkpoint_path().name == "emergency_00000045.pt"
