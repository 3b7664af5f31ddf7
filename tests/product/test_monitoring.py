"""Process-level checks of tiny_transformer.monitoring / anomaly / flops that need a plain interpreter.

(The live loss plot moved to tiny_transformer.widgets, 06a_widgets; its test lives with it.)
"""
import json
import sys

from helpers import ROOT, run

TRAIN_WITH_MONITOR = r"""
import copy, json, os, sys
import torch, torch.nn.functional as F
torch.set_num_threads(1)
from tiny_transformer.monitoring import TrainingMonitor, profile_steps
from tiny_transformer.model import TinyTransformerLM
loaded = sorted(m for m in ("matplotlib", "ipywidgets", "IPython", "pandas") if m in sys.modules)
section = {"log_every": 5, "grad_clip": 1.0, "anomaly": {"spike_factor": 2.0, "warmup_steps": 3}}
before = copy.deepcopy(section)
torch.manual_seed(0)
model = TinyTransformerLM(40, d_model=32, n_heads=2, n_layers=2, d_ff=64, max_seq_len=16)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
monitor = TrainingMonitor.from_config(section, model)
logged = []
def step_fn(step=0):
    x = torch.randint(0, 40, (4, 16))
    loss = F.cross_entropy(model(x).flatten(0, 1), x.flatten())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss, norm
for step in range(1, 21):
    loss, norm = step_fn()
    out = monitor.update(step, loss, tokens=64, samples=4, grad_norm=norm)
    if out:
        logged.append(step)
loss, _ = step_fn()
spike = monitor.update(21, loss * 50, tokens=64, samples=4, force_log=True)
report = profile_steps(step_fn, sys.argv[1], wait=0, warmup=1, active=1, print_tables=False)
print(json.dumps({"loaded": loaded, "unchanged": section == before, "logged": logged,
                  "detector": [monitor.detector.spike_factor, monitor.detector.warmup_steps],
                  "alerts": [a["type"] for a in monitor.last_alerts],
                  "traces": [str(p) for p in report.trace_files], "cwd": sorted(os.listdir("."))}))
"""


def test_monitor_from_config_trains_alerts_and_profiles_under_the_run_dir(tmp_path):
    "from_config reads the section without changing it; the profiler writes only under the run dir."
    run_dir, cwd = tmp_path / "runs" / "demo", tmp_path / "cwd"
    cwd.mkdir()
    result = run([sys.executable, "-c", TRAIN_WITH_MONITOR, str(run_dir)], cwd=cwd, timeout=300,
                 env={"PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["loaded"] == [], "importing the monitor pulls in no plotting, widget or pandas library"
    assert report["unchanged"] is True
    assert report["logged"] == [5, 10, 15, 20]
    assert report["detector"] == [2.0, 3]
    assert "loss_spike" in report["alerts"], report
    assert report["traces"] and all(t.startswith(str(run_dir / "profiler")) for t in report["traces"])
    assert report["cwd"] == [], "nothing is written into the working directory"


def test_a_bad_anomaly_setting_names_itself():
    code = ("from tiny_transformer.monitoring import TrainingMonitor\n"
            "TrainingMonitor.from_config({'log_every': 5, 'anomaly': {'spike_factr': 2.0}})")
    result = run([sys.executable, "-c", code], cwd=ROOT, timeout=120)
    assert result.returncode != 0
    assert "spike_factr" in result.stderr and "spike_factor" in result.stderr, result.stderr[-2000:]
