"""Process-level checks of tiny_transformer.widgets in a plain interpreter (no Jupyter kernel): the live loss plot
attached through the Trainer's duck-typed callback methods is cheap while training, imports no plotting or widget
library until it draws, and saves the final figure; the comparison falls back to a static figure."""
import json
import sys

from helpers import ROOT, run

HEADLESS_PLOT = r"""
import json, sys, time
from tiny_transformer.widgets import LiveLossPlot
plot = LiveLossPlot(every=1)
callbacks = [plot]
start = time.perf_counter()
for cb in callbacks:
    cb.on_train_start(None)
for step in range(1, 5001):
    for cb in callbacks:  # what the Trainer does at each log step and after each evaluation
        cb.on_step_end(None, step, {"train/loss": 3.0 - step * 1e-4, "train/lr": 1e-3, "perf/tokens_per_sec": 1.0})
        if step % 500 == 0:
            cb.on_evaluate_end(None, step, {"val/loss": 3.1, "val/perplexity": 22.0})
for cb in callbacks:
    cb.on_train_end(None, {"status": "completed"})
elapsed = time.perf_counter() - start
loaded = [m for m in ("matplotlib", "ipywidgets", "IPython", "pandas") if m in sys.modules]
path = plot.save(sys.argv[1])
print(json.dumps({"enabled": plot.enabled, "redraws": plot.redraws, "elapsed": elapsed, "loaded": loaded,
                  "n_train": len(plot.train), "n_val": len(plot.val), "n_lr": len(plot.lr)}))
"""


def test_live_loss_plot_as_a_callback_outside_a_notebook_is_cheap_and_saves_a_figure(tmp_path):
    out = tmp_path / "final" / "loss.png"
    result = run([sys.executable, "-c", HEADLESS_PLOT, str(out)], cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["enabled"] is False and report["redraws"] == 0
    assert report["loaded"] == [], "no plotting or widget library is imported while training"
    assert report["elapsed"] < 2.0, report  # 5000 log steps: list appends only
    assert (report["n_train"], report["n_val"], report["n_lr"]) == (5000, 10, 5000)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


STATIC_COMPARE = r"""
import json, sys
from pathlib import Path
from tiny_transformer.utils.logging import TrainingLogger
from tiny_transformer.widgets import compare_logs
runs = Path(sys.argv[1])
for name, rate in (("a", 0.5), ("b", 1.0)):
    with TrainingLogger(name, log_dir=runs / name, log_to_console=False) as lg:
        lg.log_start({"lr": rate})
        for step in range(5):
            lg.log_metrics({"loss": 3.0 - rate * step / 5}, step=step, prefix="val/")
fig = compare_logs(runs)
print(json.dumps({"type": type(fig).__name__, "lines": len(fig.axes[0].lines), "widgets": "ipywidgets" in sys.modules}))
"""


def test_compare_logs_outside_a_notebook_returns_a_static_figure(tmp_path):
    result = run([sys.executable, "-c", STATIC_COMPARE, str(tmp_path / "runs")], cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"type": "Figure", "lines": 2, "widgets": False}
