"""Process-level checks of tiny_transformer.monitoring that need a plain interpreter (no Jupyter kernel)."""
import json
import sys

from helpers import ROOT, run

HEADLESS_PLOT = r"""
import json, sys, time
from tiny_transformer.monitoring import LiveLossPlot
plot = LiveLossPlot(every=1)
start = time.perf_counter()
for step in range(1, 5001):
    plot.update(step, 3.0 - step * 1e-4, val_loss=3.1 if step % 500 == 0 else None, lr=1e-3)
elapsed = time.perf_counter() - start
loaded = [m for m in ("matplotlib", "ipywidgets", "IPython") if m in sys.modules]
path = plot.save(sys.argv[1])
print(json.dumps({"enabled": plot.enabled, "redraws": plot.redraws, "elapsed": elapsed, "loaded": loaded,
                  "n_train": len(plot.train), "n_val": len(plot.val)}))
"""


def test_live_loss_plot_outside_a_notebook_is_cheap_and_saves_a_figure(tmp_path):
    out = tmp_path / "final" / "loss.png"
    result = run([sys.executable, "-c", HEADLESS_PLOT, str(out)], cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["enabled"] is False and report["redraws"] == 0
    assert report["loaded"] == [], "no plotting or widget library is imported while training"
    assert report["elapsed"] < 1.0, report  # 5000 updates: list appends only
    assert (report["n_train"], report["n_val"]) == (5000, 10)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
