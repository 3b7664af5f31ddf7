"""Process-level tests of tiny_transformer.utils.experiment: real TensorBoard files and server, a real
offline wandb run, "auto"'s choice and fallback order, bounded online start-up, clean errors for an explicit
backend, a tracker that leaves $HOME untouched, and `tt-train`'s default tracking served by a real TensorBoard."""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from helpers import ROOT, run, stop_process
from tracking_readers import read_tensorboard_scalars, read_wandb_run, tensorboard_tags

pytest.importorskip("tensorboard")

# The environment of a child process that must find nothing of ours: no wandb/Jupyter/matplotlib
# directories pointing anywhere, and an empty HOME of its own.
_SCRUB = ("WANDB_", "XDG_", "JUPYTER_", "IPYTHONDIR", "MPLCONFIGDIR", "TT_CACHE_DIR")


def _clean_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    env.update(HOME=str(home), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tensorboard_events_read_back_and_are_served(tmp_path):
    from tiny_transformer.utils.experiment import ExperimentTracker

    run_dir = tmp_path / "runs" / "served"
    losses = {step: 4.0 / (1 + step) for step in range(0, 50, 5)}
    with ExperimentTracker("p", "served", {"training": {"learning_rate": 3e-4}}, backend="tensorboard",
                           log_dir=run_dir) as tracker:
        for step, loss in losses.items():
            tracker.log_metrics({"train/loss": loss, "val/perplexity": math.exp(loss)}, step=step)
        tracker.log_hparams(final_metrics={"final/val_loss": 0.5})
    scalars = read_tensorboard_scalars(run_dir / "tensorboard")
    assert [s for s, _ in scalars["train/loss"]] == list(losses)
    for (step, value) in scalars["train/loss"]:
        assert value == pytest.approx(losses[step], rel=1e-6)
    assert [d for d in (run_dir / "tensorboard").iterdir() if d.is_dir()] == []  # no add_hparams subfolder

    server, port = _start_tensorboard(tmp_path / "runs", home=tmp_path)
    try:
        tags = tensorboard_tags(port, 120, server)
        assert tags, f"tensorboard served no scalar tags within 120 s: {_server_output(server)}"
        run_key = "served/tensorboard"
        assert run_key in tags, tags
        assert {"train/loss", "val/perplexity", "final/val_loss"} <= set(tags[run_key])
    finally:
        stop_process(server, timeout=20)
    assert server.returncode is not None


def _start_tensorboard(logdir: Path, home: Path) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={**os.environ, "HOME": str(home)})
    return server, port


def _server_output(server: subprocess.Popen) -> str:
    return f"exit code {server.returncode}" if server.poll() is not None else "still running"


WANDB_CHILD = """
import json, math, sys
from pathlib import Path
from tiny_transformer.utils.experiment import ExperimentTracker
run_dir = Path(sys.argv[1])
artifact = Path("weights.bin").resolve()
artifact.write_bytes(b"0123")
with ExperimentTracker("tt-test", "offline", {"training": {"learning_rate": 3e-4}, "seed": 1},
                       backend=["wandb", "tensorboard", "console"], log_dir=run_dir, tags=["test"]) as tracker:
    for step in range(0, 30, 3):
        tracker.log_metrics({"train/loss": 5.0 - step / 10, "train/lr": 3e-4}, step=step)
    tracker.log_metrics({"train/loss": float("nan")}, step=30)
    tracker.log_text("samples", "ROMEO: hi", step=30)
    tracker.log_hparams(final_metrics={"final/best": 2.3})
    tracker.save_artifact(artifact, "weights")
print(json.dumps({"backend": tracker.backend}))
"""


@pytest.mark.slow
def test_wandb_offline_run_holds_history_and_home_stays_empty(tmp_path):
    pytest.importorskip("wandb")

    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    run_dir = work / "runs" / "offline"
    result = subprocess.run([sys.executable, "-c", WANDB_CHILD, str(run_dir)], env=_clean_env(home), cwd=work,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["backend"] == "wandb+tensorboard+console"

    written = [str(p.relative_to(home)) for p in home.rglob("*")]
    assert written == [], f"the tracker wrote under HOME: {written}"

    wandb_run = read_wandb_run(run_dir)
    assert run_dir in wandb_run["path"].parents
    rows = [r for r in wandb_run["history"] if "train/loss" in r]
    assert [r["_step"] for r in rows] == list(range(0, 31, 3))
    assert [r["train/loss"] for r in rows[:-1]] == [5.0 - s / 10 for s in range(0, 30, 3)]
    assert math.isnan(rows[-1]["train/loss"])
    assert wandb_run["config"]["training"] == {"learning_rate": 3e-4}
    assert wandb_run["summary"]["final/best"] == 2.3
    # every wandb file is inside the run directory (caches, settings and artifact staging included)
    assert not (work / "wandb").exists()
    assert (run_dir / "wandb").is_dir()
    # TensorBoard got the same values in the same run
    assert [s for s, _ in read_tensorboard_scalars(run_dir / "tensorboard")["train/loss"]] == list(range(0, 31, 3))


BLOCK_WANDB = """
import importlib.abc, json, sys, warnings
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "wandb":
            raise ModuleNotFoundError("No module named 'wandb' (blocked by the test)")
sys.meta_path.insert(0, Block())
from tiny_transformer.utils.experiment import ExperimentTracker
from tracking_readers import read_tensorboard_scalars
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with ExperimentTracker("p", "fallback", {"lr": 1}, backend="auto", log_dir=sys.argv[1]) as tracker:
        tracker.log_metrics({"train/loss": 1.25}, step=3)
        tracker.watch_model(__import__("torch").nn.Linear(2, 2))  # a no-op without wandb
scalars = read_tensorboard_scalars(sys.argv[1] + "/tensorboard")
print(json.dumps({"backend": tracker.backend, "warnings": [str(w.message) for w in caught],
                  "loss": scalars["train/loss"], "wandb_loaded": "wandb" in sys.modules}))
"""


def test_auto_falls_back_when_wandb_cannot_be_imported(tmp_path):
    env = {**_clean_env(tmp_path), "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    result = subprocess.run([sys.executable, "-c", BLOCK_WANDB, str(tmp_path / "run")], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == "tensorboard"
    assert len(report["warnings"]) == 1 and "wandb" in report["warnings"][0], report["warnings"]
    assert report["loss"] == [[3, 1.25]]
    assert not report["wandb_loaded"]


FAILING_INIT = """
import json, sys, time, warnings
from tiny_transformer.utils.experiment import ExperimentTracker
start = time.monotonic()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with ExperimentTracker("p", "online", {"lr": 1}, backend="auto", log_dir=sys.argv[1], wandb_mode="online") as tracker:
        tracker.log_metrics({"train/loss": 2.0}, step=0)
print(json.dumps({"backend": tracker.backend, "seconds": time.monotonic() - start,
                  "warnings": [str(w.message) for w in caught]}))
"""


@pytest.mark.slow
def test_auto_falls_back_when_wandb_init_fails(tmp_path):
    # Online mode with no server reachable: wandb.init gives up within the default start_timeout_s (10 s; before,
    # it stalled about 63 s), and "auto" goes on with TensorBoard after one warning instead of hanging or crashing.
    pytest.importorskip("wandb")
    home = tmp_path / "home"
    home.mkdir()
    env = {**_clean_env(home), "WANDB_API_KEY": "0" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-c", FAILING_INIT, str(tmp_path / "run")], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == "tensorboard"
    assert len(report["warnings"]) == 1 and "wandb failed" in report["warnings"][0], report["warnings"]
    assert report["seconds"] < 20, report  # 10 s budget + wandb's import and service start
    assert list(home.rglob("*")) == []


# "auto" = every installed backend that needs no account, in TRACKER_BACKENDS order (tensorboard, then wandb
# offline), else the console; one warning names what it could not start.
AUTO_CHILD = """
import importlib.abc, json, sys, warnings
blocked = set(sys.argv[2].split(",")) - {""}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, Block())
from tiny_transformer.utils.experiment import ExperimentTracker
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with ExperimentTracker("p", "auto", {"lr": 1}, log_dir=sys.argv[1]) as tracker:
        tracker.log_metrics({"train/loss": 1.0}, step=0)
print(json.dumps({"backend": tracker.backend, "warnings": [str(w.message) for w in caught if "tracking" in str(w.message)]}))
"""


@pytest.mark.parametrize("blocked,expected,warned", [
    ("", "tensorboard+wandb", []),
    ("wandb", "tensorboard", ["wandb failed"]),
    ("tensorboard", "wandb", ["tensorboard failed"]),
    ("tensorboard,wandb", "console", ["tensorboard failed", "wandb failed"]),
], ids=["both-installed", "no-wandb", "no-tensorboard", "neither"])
def test_auto_starts_every_installed_backend_in_order(tmp_path, blocked, expected, warned):
    if "wandb" not in blocked:
        pytest.importorskip("wandb")
    result = subprocess.run([sys.executable, "-c", AUTO_CHILD, str(tmp_path / "run"), blocked],
                            env={**_clean_env(tmp_path), "WANDB_MODE": "offline"}, cwd=tmp_path,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == expected
    if warned:
        assert len(report["warnings"]) == 1, report["warnings"]  # one warning, naming every failure
        assert all(w in report["warnings"][0] for w in warned), report["warnings"]
    else:
        assert report["warnings"] == []


EXPLICIT_CHILD = """
import importlib.abc, json, sys, time
blocked = set(sys.argv[3].split(",")) - {""}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, Block())
from tiny_transformer.utils.experiment import ExperimentTracker, TrackerError
start = time.monotonic()
try:
    ExperimentTracker("p", "explicit", {"lr": 1}, backend=sys.argv[2], log_dir=sys.argv[1], wandb_mode="online",
                      start_timeout_s=3)
    outcome = "started"
except TrackerError as e:
    outcome = str(e)
print(json.dumps({"outcome": outcome, "seconds": time.monotonic() - start}))
"""


@pytest.mark.parametrize("backend,blocked,expected", [
    ("wandb", "wandb", ['backend "wandb" is not installed', 'pip install "tiny_transformer[tracking]"']),
    ("tensorboard", "tensorboard", ['backend "tensorboard" is not installed', "pip install"]),
    ("wandb", "", ['backend "wandb" could not start', "wandb_mode=offline", "tracking.backend=auto"]),
], ids=["wandb-missing", "tensorboard-missing", "wandb-online-unreachable"])
def test_an_explicit_backend_that_fails_raises_a_clean_tracker_error(tmp_path, backend, blocked, expected):
    if backend == "wandb" and not blocked:
        pytest.importorskip("wandb")
    env = {**_clean_env(tmp_path / "home"), "WANDB_API_KEY": "0" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"}
    (tmp_path / "home").mkdir()
    result = subprocess.run([sys.executable, "-c", EXPLICIT_CHILD, str(tmp_path / "run"), backend, blocked],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(e in report["outcome"] for e in expected), report["outcome"]
    assert report["seconds"] < 15, report  # start_timeout_s=3 bounds the online attempt


def _scalar_steps(port: int, run: str, tag: str) -> list[int]:
    url = f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?tag={urllib.parse.quote(tag)}&run={urllib.parse.quote(run)}"
    with urllib.request.urlopen(url, timeout=10) as r:
        return [int(step) for _, step, _ in json.loads(r.read())]


@pytest.mark.slow
def test_tt_train_default_tracking_is_served_by_tensorboard(tmp_path):
    # What `make train` does (the tiny preset and its tracking settings), for a few steps: the run folder must
    # hold TensorBoard event files that a real `tensorboard --logdir runs` serves, train/loss and val/loss included.
    runs = tmp_path / "runs"
    result = run(["tt-train", "--preset", "tiny", "training.max_steps=12", "training.eval_every=6",
                  "training.log_every=3", "training.warmup_steps=2", f"output_dir={runs}", "name=front",
                  "--no-progress"], timeout=600, env={"WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert any((runs / "front" / "tensorboard").glob("events.out.tfevents.*")), list((runs / "front").iterdir())
    server, port = _start_tensorboard(runs, home=tmp_path)
    try:
        tags = tensorboard_tags(port, 120, server)
        assert "front/tensorboard" in tags, (tags, _server_output(server))
        assert {"train/loss", "val/loss"} <= set(tags["front/tensorboard"])
        assert _scalar_steps(port, "front/tensorboard", "val/loss") == [6, 12]
        assert 12 in _scalar_steps(port, "front/tensorboard", "train/loss")
    finally:
        stop_process(server, timeout=20)
