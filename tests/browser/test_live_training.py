"""The learner's view of a training run, in a real browser.

1. Live loss plot: a real JupyterLab (the harness of test_jupyterlab_widgets.py) runs
   tests/fixtures/live_training.ipynb, which trains a shrunken tiny preset with `LiveLossPlot` attached as a
   Trainer callback (as 07 does). While the training cell is still running, the plot must appear and then
   change (a new image source and different pixels); when it ends, the widget must report both curves.
   Screenshots: test-artifacts/screenshots/live_plot_{first,mid_run,end}.png.
2. TensorBoard screenshot tool: tools/screenshot_tensorboard.py trains a very small run, serves it with a real
   TensorBoard, and must write a PNG of the train/loss and val/loss charts that is not blank.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from browser import browser_context, ensure_chromium, screenshot_path, wait_until
from helpers import ROOT, corpus_path
from test_jupyterlab_widgets import (RUN_STATE_JS, jupyterlab_server, open_notebook, plot_loaded, plot_src,
                                     shutdown_kernels, start_run_all, wait_finished)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

FIXTURE = "tests/fixtures/live_training.ipynb"
WIDGET = ".tt-live-loss"
BUDGET_S = 85  # the whole live-plot test: server start, kernel, training and checks
# The fixture's training cell has printed its closing line ("trained N steps"): the run is over.
TRAINING_DONE_JS = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    return panel.content.widgets.some(c => c.model.type === 'code' &&
        c.model.outputs.toJSON().some(o => o.output_type === 'stream' && /trained \\d+ steps/.test(o.text)));
}"""


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    assert left > 0, f"the live-plot test ran past its {BUDGET_S}s budget"
    return left


def _no_cell_error(page) -> None:
    "Fail at once, with the traceback, when a fixture cell raised (rather than waiting for a plot that never comes)."
    error = page.evaluate(RUN_STATE_JS)["error"]
    if error is not None:
        error = re.sub(r"\x1b\[[0-9;]*m", "", error)  # no terminal colours
        raise AssertionError(f"{FIXTURE} raised while running:\n{error[-3000:]}")


def widget_labextensions_path(monkeypatch) -> None:
    """Let the JupyterLab server find the ipywidgets frontend (@jupyter-widgets/jupyterlab-manager).

    A venv made with --system-site-packages sees jupyterlab_widgets' Python package but not its labextension,
    which lies in the base interpreter's share/jupyter: without it every widget renders as its text repr."""
    here = Path(sys.prefix) / "share" / "jupyter"
    base = Path(sys.base_prefix) / "share" / "jupyter"
    manager = "labextensions/@jupyter-widgets/jupyterlab-manager"
    if not (here / manager).exists() and (base / manager).exists():
        extra = os.environ.get("JUPYTER_PATH")
        monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join([str(base), *([extra] if extra else [])]))


def test_live_loss_plot_changes_while_training(tmp_path, monkeypatch):
    ensure_chromium()
    widget_labextensions_path(monkeypatch)
    corpus_path()  # TT_DATA must point at the corpus: the notebook's kernel inherits it
    t0 = time.monotonic()
    deadline = t0 + BUDGET_S
    root = tmp_path / "lab"
    (root / FIXTURE).parent.mkdir(parents=True)
    shutil.copy2(ROOT / FIXTURE, root / FIXTURE)  # a copy: running and autosaving never touch the repository
    timings = {}
    with jupyterlab_server(root) as (base, token), browser_context(viewport=(1280, 1000)) as context:
        timings["server"] = time.monotonic() - t0
        page = open_notebook(context, base, token, FIXTURE)
        timings["kernel connected"] = time.monotonic() - t0
        try:
            start_run_all(page)
            wait_until(lambda: _no_cell_error(page) or plot_loaded(page, WIDGET), timeout=_remaining(deadline),
                       interval=0.2, what="the live loss plot to appear")
            first = plot_src(page, WIDGET)
            widget = page.locator(WIDGET).first
            widget.scroll_into_view_if_needed()
            first_png = widget.screenshot(path=str(screenshot_path("live_plot_first.png")))
            assert not page.evaluate(TRAINING_DONE_JS), "the plot appeared only after training had finished"
            timings["first frame"] = time.monotonic() - t0

            def status_step() -> int:
                status = page.locator(f"{WIDGET} .tt-live-loss-status").first.inner_text()
                return int(m.group(1)) if (m := re.match(r"step (\d+)", status)) else -1

            def new_frame():  # a redraw about half-way through the run, so the screenshot shows curves
                _no_cell_error(page)
                src = plot_src(page, WIDGET)
                return src not in ("", first) and plot_loaded(page, WIDGET) and status_step() >= 40
            wait_until(new_frame, timeout=_remaining(deadline), interval=0.2, what="the live plot to change")
            page.wait_for_timeout(150)  # let the new image paint
            mid_step = status_step()
            mid_png = widget.screenshot(path=str(screenshot_path("live_plot_mid_run.png")))
            # Checked after the capture: both frames were taken while the training cell was still running.
            assert not page.evaluate(TRAINING_DONE_JS), "the plot changed only after training had finished"
            assert mid_png != first_png, "the live plot's image source changed but its pixels did not"
            timings[f"frame at step {mid_step}"] = time.monotonic() - t0

            wait_finished(page, base, token, FIXTURE, timeout=_remaining(deadline))
            timings["run finished"] = time.monotonic() - t0
            widget.scroll_into_view_if_needed()
            wait_until(lambda: plot_loaded(page, WIDGET), timeout=10, what="the final plot to load")
            page.wait_for_timeout(300)
            end_png = widget.screenshot(path=str(screenshot_path("live_plot_end.png")))
            assert end_png not in (first_png, mid_png), "the final plot looks like an earlier frame"
            # Both curves: the widget's own history (printed by the fixture) and its status line.
            text = page.locator(".jp-NotebookPanel").first.inner_text()
            counts = re.search(r"LIVE-PLOT train_points=(\d+) val_points=(\d+) redraws=(\d+)", text)
            assert counts, f"the fixture's closing line is missing from the notebook:\n{text[-1500:]}"
            train_points, val_points, redraws = map(int, counts.groups())
            assert train_points >= 5 and val_points >= 3 and redraws >= 3, counts.group(0)
            status = page.locator(f"{WIDGET} .tt-live-loss-status").first.inner_text()
            assert re.search(r"step 100\b.*train \d+\.\d+.*val \d+\.\d+", status), f"status line: {status!r}"
            page.screenshot(path=str(screenshot_path("live_plot_page.png")))
        except BaseException:
            page.screenshot(path=str(screenshot_path("live_plot_failure.png")))
            raise
        finally:
            page.close()
            shutdown_kernels(base, token)
    elapsed = time.monotonic() - t0
    print("live plot: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()) + f", total {elapsed:.1f}s")
    assert elapsed < BUDGET_S + 15, f"took {elapsed:.0f}s"  # shutdown included


def test_screenshot_tensorboard_tool(tmp_path):
    "The tool trains a very small run, serves it with a real TensorBoard and writes a non-blank PNG of both charts."
    ensure_chromium()
    corpus_path()
    pytest.importorskip("tensorboard")
    from PIL import Image, ImageStat

    out = tmp_path / "tb.png"
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "screenshot_tensorboard.py"), "--out", str(out), "--timeout", "60",
         "model.d_model=32", "model.n_layers=1", "model.d_ff=64", "model.max_seq_len=32", "training.batch_size=8",
         "training.max_steps=30", "training.eval_every=10", "training.warmup_steps=3", "training.eval_batches=1"],
        capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert out.exists() and out.stat().st_size > 2000, res.stdout
    image = Image.open(out).convert("L")
    assert image.width >= 400 and image.height >= 200, image.size
    stat = ImageStat.Stat(image)
    assert stat.stddev[0] > 15, f"the screenshot looks blank (grey-level stddev {stat.stddev[0]:.1f})"
    # Dark pixels (lines, labels) are a small minority on the light background: a chart, not a blank or dark page.
    dark = sum(image.histogram()[:128]) / (image.width * image.height)
    assert 0.005 < dark < 0.4, f"fraction of dark pixels {dark:.3f}"
    shutil.copy2(out, screenshot_path("tensorboard_tool.png"))
    print(f"tensorboard tool: {time.monotonic() - t0:.1f}s, {image.size}, {out.stat().st_size} bytes")


def test_screenshot_tensorboard_refuses_a_folder_without_events(tmp_path):
    "A run folder with no TensorBoard events: exit 2 with a message naming the folder, no traceback."
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "screenshot_tensorboard.py"), "--run", str(tmp_path),
                          "--out", str(tmp_path / "x.png")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert str(tmp_path) in res.stderr and "tracking.backend=tensorboard" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "x.png").exists()


def test_screenshot_tensorboard_names_missing_tags(tmp_path):
    "A run TensorBoard reads but without val/loss: exit 2 naming the missing tag and the ones it has."
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(tmp_path / "run" / "tensorboard")) as writer:
        for step in range(1, 4):
            writer.add_scalar("train/loss", 4.0 / step, step)
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "screenshot_tensorboard.py"), "--run",
                          str(tmp_path / "run"), "--out", str(tmp_path / "x.png"), "--timeout", "15"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "['val/loss']" in res.stderr and "train/loss" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x.png").exists()
