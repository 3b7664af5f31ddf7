"""Widgets in a real JupyterLab: start a server on 127.0.0.1 (token auth, every Jupyter/IPython/matplotlib
directory in a temporary folder), open a notebook in headless chromium, run all its cells, and check
that each widget renders (no "Loading widget" placeholder, ipywidgets DOM present) and that its plot
changes when a control changes. Screenshots: test-artifacts/screenshots/jupyterlab-<notebook>-{before,after}.png.

To check another widget, add a line to WIDGET_CASES: (notebook, widget CSS selector, control CSS selector).
The widget selector must match the element that contains the plot (an <img>: matplotlib's inline PNG in
an Output widget, or an ipywidgets Image); the control selector, inside it, the control to change (a
slider, dropdown, checkbox, toggle, button or text box). With control None the widget is a live one:
its plot must change while the notebook runs (first frame vs last).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from browser import browser_context, ensure_chromium, free_port, screenshot_path, wait_until
from helpers import ROOT, stop_process

pytestmark = [pytest.mark.slow, pytest.mark.browser]

WIDGET_CASES = [
    # (notebook, widget selector, control selector or None for a live widget)
    ("nbs/06a_widgets.ipynb", ".tt-logcmp", ".tt-logcmp-smoothing"),  # the JSONL comparison widget
    ("nbs/06a_widgets.ipynb", ".tt-live-loss", None),  # the live loss plot, redrawn while training runs
    ("tests/fixtures/widget_slider.ipynb", ".widget-vbox", ".widget-slider"),  # the harness itself
]
RUN_TIMEOUT_S = 240
RAISES = "tests/fixtures/raises.ipynb"  # a notebook whose second cell raises: the harness must say so
# The open notebook's cells, from JupyterLab's own model (window.jupyterapp, --LabApp.expose_app_in_browser).
RUN_STATE_JS = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const cells = panel.content.widgets.filter(c => c.model.type === 'code' && c.model.sharedModel.getSource().trim());
    for (const c of cells) {
        const err = c.model.outputs.toJSON().find(o => o.output_type === 'error');
        if (err) return {done: true, error: err.ename + ': ' + err.evalue + '\\n' + err.traceback.join('\\n')};
    }
    return {done: cells.length > 0 && cells.every(c => c.model.executionCount !== null), error: null};
}"""


@contextlib.contextmanager
def jupyterlab_server(root: Path):
    "A JupyterLab server on 127.0.0.1 serving `root`, with token auth and all its state in a temp folder."
    home = root.parent / f"{root.name}-jupyter-home"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "IN_TEST": "1"}  # nbdev's own switch: a notebook's closing nbdev_export() cell does nothing
    for var, sub in [("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                     ("JUPYTERLAB_SETTINGS_DIR", "lab-settings"), ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
                     ("IPYTHONDIR", "ipython"), ("MPLCONFIGDIR", "mpl"), ("HOME", "home")]:
        (home / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / sub)
    # No "get notified about Jupyter news?" prompt (it would fetch from the network, and covers the page).
    news = home / "lab-settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True, exist_ok=True)
    news.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    # Every cell stays rendered: with the default 'contentVisibility' windowing, a widget far above the last cell
    # (06a_widgets holds two) is skipped by the browser and never counts as visible.
    windowing = home / "lab-settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    windowing.parent.mkdir(parents=True, exist_ok=True)
    windowing.write_text('{"windowingMode": "none"}')
    token, port = secrets.token_hex(16), free_port()
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True", "--LabServerApp.extension_manager=readonly"]
    if os.geteuid() == 0:  # containers and CI runners
        cmd.append("--allow-root")
    log = open(home / "server.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        def up():
            assert proc.poll() is None, f"jupyter lab exited:\n{(home / 'server.log').read_text()[-3000:]}"
            with contextlib.suppress(OSError):
                return urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).status == 200
        wait_until(up, timeout=90, what="the JupyterLab server")
        yield base, token
    finally:
        stop_process(proc, timeout=20)
        log.close()


def kernels(base: str, token: str) -> list[dict]:
    "The server's running kernels (/api/kernels answers 500 while a kernel is being shut down: retry)."
    for attempt in range(20):
        try:
            return json.load(urllib.request.urlopen(f"{base}/api/kernels?token={token}", timeout=5))
        except urllib.error.HTTPError as e:
            if e.code < 500 or attempt == 19:
                raise
            time.sleep(0.5)


def shutdown_kernels(base: str, token: str) -> None:
    for k in kernels(base, token):
        req = urllib.request.Request(f"{base}/api/kernels/{k['id']}?token={token}", method="DELETE")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(req, timeout=10)
    wait_until(lambda: not kernels(base, token), timeout=30, what="the kernels to shut down")


def open_notebook(context, base: str, token: str, name: str):
    "Open notebook `name` (relative to the server root) in JupyterLab; return the page once its kernel is connected."
    earlier = {k["id"] for k in kernels(base, token)}
    page = context.new_page()
    page.goto(f"{base}/lab/tree/{name}?token={token}&reset", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=30_000)
    # The kernel reports "idle" before the page is attached to it: wait for a real connection.
    wait_until(lambda: any(k["id"] not in earlier and k["connections"] > 0 and k["execution_state"] == "idle"
                           for k in kernels(base, token)),
               timeout=90, what="the notebook's kernel to be connected and idle")
    return page


def start_run_all(page) -> None:
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def wait_finished(page, base: str, token: str, name: str, timeout: float = RUN_TIMEOUT_S) -> None:
    "Wait until every non-empty code cell has run and the kernel is idle; fail at once when a cell raised."
    def finished():
        state = page.evaluate(RUN_STATE_JS)
        if state["error"] is not None or (state["done"] and all(k["execution_state"] == "idle"
                                                                for k in kernels(base, token))):
            return state
    state = wait_until(finished, timeout=timeout, interval=0.5, what=f"{name} to finish running")
    error = re.sub(r"\x1b\[[0-9;]*m", "", state["error"] or "")  # no terminal colours
    assert state["error"] is None, f"{name} raised while running:\n{error[-3000:]}"


def open_and_run(context, base: str, token: str, name: str, timeout: float = RUN_TIMEOUT_S):
    """Open notebook `name` (relative to the server root) in JupyterLab, run all its cells, wait until they
    have finished, and return the page. Fails on a cell error."""
    page = open_notebook(context, base, token, name)
    start_run_all(page)
    wait_finished(page, base, token, name, timeout)
    return page


def poke(page, selector: str) -> None:
    "Change the control at `selector` the way a user would."
    control = page.locator(selector).first
    kind = control.evaluate("""e => {
        const inner = e.querySelector('select, input, button, .noUi-handle, .ui-slider-handle');
        const t = inner || e;
        return (t.classList.contains('noUi-handle') || t.classList.contains('ui-slider-handle')) ? 'slider'
             : t.tagName.toLowerCase() + ':' + (t.type || '');
    }""")
    if kind == "slider":
        handle = control.locator(".noUi-handle, .ui-slider-handle").first
        handle.focus()
        for _ in range(3):
            handle.press("ArrowRight")
    elif kind.startswith("select"):
        box = control.locator("select").first if control.evaluate("e => e.tagName") != "SELECT" else control
        options = box.evaluate("s => [...s.options].map(o => o.value)")
        current = box.evaluate("s => s.value")
        box.select_option(next(o for o in options if o != current))
    elif kind.startswith("input") and kind.split(":")[1] not in ("checkbox", "radio", "button", "submit"):
        box = control.locator("input").first if control.evaluate("e => e.tagName") != "INPUT" else control
        box.fill(str(box.input_value()) + "1")
        box.press("Enter")
    else:
        (control.locator("input, button").first if control.evaluate("e => !['INPUT', 'BUTTON'].includes(e.tagName)")
         else control).click()


def plot_src(page, widget: str) -> str:
    "The plot inside the widget: its image data (matplotlib's inline PNG)."
    return page.locator(f"{widget} img").first.get_attribute("src") or ""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    ensure_chromium()
    root = tmp_path_factory.mktemp("lab")
    for notebook in [case[0] for case in WIDGET_CASES] + [RAISES]:  # copies: running and autosaving never touch the repository
        (root / notebook).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / notebook, root / notebook)
    with jupyterlab_server(root) as (base, token), browser_context(viewport=(1280, 1000)) as context:
        yield base, token, context


def plot_loaded(page, widget: str) -> bool:
    return page.evaluate("sel => { const i = document.querySelector(sel);"
                         " return !!i && i.complete && i.naturalWidth > 0; }", f"{widget} img")


@pytest.mark.parametrize("notebook,widget,control", WIDGET_CASES, ids=[Path(c[0]).stem + c[1] for c in WIDGET_CASES])
def test_widget_renders_and_redraws(lab, notebook, widget, control):
    base, token, context = lab
    t0 = time.monotonic()
    stem = Path(notebook).stem
    page = open_notebook(context, base, token, notebook)
    try:
        start_run_all(page)
        if control is None:  # a live widget: its plot must change while the notebook runs
            wait_until(lambda: plot_loaded(page, widget), timeout=RUN_TIMEOUT_S, interval=0.2,
                       what=f"the plot in {widget} to appear")
            before_src = plot_src(page, widget)
            before = page.locator(widget).first.screenshot(path=str(screenshot_path(f"jupyterlab-{stem}-before.png")))
        wait_finished(page, base, token, notebook)
        page.wait_for_selector(f"{widget} img", timeout=60_000)
        panel = page.locator(".jp-NotebookPanel").first
        assert "Loading widget" not in panel.inner_text(), "a widget is stuck on its 'Loading widget' placeholder"
        assert page.locator(".jupyter-widgets").count() > 0, "no ipywidgets DOM (.jupyter-widgets) in the notebook"
        assert page.locator("[class*='widget-']").count() > 0, "no .widget-* elements in the notebook"
        target = page.locator(widget).first
        target.scroll_into_view_if_needed()
        wait_until(lambda: plot_loaded(page, widget), timeout=30, what="the widget's plot to load")
        if control is not None:
            before_src = plot_src(page, widget)
            before = target.screenshot(path=str(screenshot_path(f"jupyterlab-{stem}-before.png")))
            poke(page, f"{widget} {control}")
            wait_until(lambda: plot_src(page, widget) not in ("", before_src), timeout=60,
                       what="the plot to change after the control changed")
        else:
            assert plot_src(page, widget) != before_src, "the live plot did not change while the notebook ran"
        page.wait_for_timeout(300)  # let the new image paint
        after = target.screenshot(path=str(screenshot_path(f"jupyterlab-{stem}-after.png")))
        assert after != before, "the widget looks the same after its plot changed"
        page.screenshot(path=str(screenshot_path(f"jupyterlab-{stem}-page.png")))
    finally:
        page.close()
        shutdown_kernels(base, token)
    print(f"{notebook}: opened, ran and redrawn in {time.monotonic() - t0:.1f}s")


def test_harness_reports_a_failing_cell(lab):
    "open_and_run fails fast, with the exception, when a cell raises (rather than waiting for its timeout)."
    base, token, context = lab
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match="ValueError: boom from the fixture"):
        page = open_and_run(context, base, token, RAISES, timeout=60)
        page.close()
    shutdown_kernels(base, token)
    assert time.monotonic() - t0 < 50
