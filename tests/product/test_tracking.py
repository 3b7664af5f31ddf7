"""Process-level tests of tiny_transformer.utils.experiment: real TensorBoard files and server, a real
offline wandb run, the "auto" fallback without wandb, and a tracker that leaves $HOME untouched."""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers import BIN, ROOT, stop_process

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
    from tiny_transformer.utils.experiment import ExperimentTracker, read_tensorboard_scalars

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

    port = _free_port()
    server = subprocess.Popen([str(BIN / "tensorboard"), "--logdir", str(tmp_path / "runs"), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={**os.environ, "HOME": str(tmp_path)})
    try:
        deadline, tags, last_error = time.monotonic() + 120, None, None
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"tensorboard exited with {server.returncode}: {server.stdout.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/tags", timeout=5) as r:
                    tags = json.loads(r.read())
                if tags:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
                last_error = e
            time.sleep(0.5)
        assert tags, f"tensorboard served no scalar tags within 120 s (last error: {last_error})"
        run_key = "served/tensorboard"
        assert run_key in tags, tags
        assert {"train/loss", "val/perplexity", "final/val_loss"} <= set(tags[run_key])
    finally:
        stop_process(server, timeout=20)
    assert server.returncode is not None


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
    from tiny_transformer.utils.experiment import read_tensorboard_scalars, read_wandb_run

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
from tiny_transformer.utils.experiment import ExperimentTracker, read_tensorboard_scalars
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
    result = subprocess.run([sys.executable, "-c", BLOCK_WANDB, str(tmp_path / "run")], env=_clean_env(tmp_path),
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
    with ExperimentTracker("p", "online", {"lr": 1}, backend="auto", log_dir=sys.argv[1], wandb_mode="online",
                           wandb_init_timeout=5) as tracker:
        tracker.log_metrics({"train/loss": 2.0}, step=0)
print(json.dumps({"backend": tracker.backend, "seconds": time.monotonic() - start,
                  "warnings": [str(w.message) for w in caught]}))
"""


@pytest.mark.slow
def test_auto_falls_back_when_wandb_init_fails(tmp_path):
    # Online mode with a key the server cannot accept (or no server reachable at all): wandb.init fails
    # within its timeout, and "auto" goes on with TensorBoard instead of hanging or crashing.
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
    assert report["seconds"] < 60
    assert list(home.rglob("*")) == []
