"""Screenshot a run's TensorBoard scalars for readers who cannot run TensorBoard (docs site, GitHub).

    python tools/screenshot_tensorboard.py                      # train the tiny preset 200 steps, then shoot
    python tools/screenshot_tensorboard.py --run runs/tiny-...  # shoot an existing run folder
    python tools/screenshot_tensorboard.py --out /tmp/tb.png training.max_steps=100

It trains (or takes) a run folder with TensorBoard events, starts a real `tensorboard --logdir <run>
--host 127.0.0.1 --port <free port>`, opens the scalars page in headless Debian chromium (Python playwright
with executable_path=/usr/bin/chromium: never `playwright install`), waits until the charts of every
`--tags` tag have drawn their lines, saves a PNG cropped to those charts (palette-quantized, so it stays
small), and stops the server. Exit status 2 (a message, no traceback) for a run folder without events,
a missing chromium, or tags the run never logged.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "nbs" / "images" / "tensorboard_scalars.png"
DEFAULT_TAGS = ("train/loss", "val/loss")
FAILED_PAGE = ROOT / "test-artifacts" / "screenshots" / "tensorboard_timeout.png"  # ignored by git
# What the default training run sets on top of the tiny preset (a few minutes on a laptop CPU at most).
TRAIN_DEFAULTS = ["training.max_steps=200", "training.eval_every=20", "training.log_every=10",
                  "training.warmup_steps=20", "training.sample_tokens=0", "logging.console=false",
                  "tracking.backend=tensorboard"]
CHROMIUM = Path(os.environ.get("TT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


class ToolError(Exception):
    "A user-facing problem: printed as one message, exit status 2."


def event_files(run: Path) -> list[Path]:
    return sorted(run.rglob("events.out.tfevents.*"))


def train_run(output_dir: Path, overrides: list[str], name: str = "tb-screenshot") -> Path:
    "Train the tiny preset (TensorBoard tracking on) with `overrides`; return its run folder."
    from tiny_transformer.config import ConfigError, load_config
    from tiny_transformer.presets import get_preset
    from tiny_transformer.training import Trainer

    try:
        config = load_config(overrides=[*TRAIN_DEFAULTS, f"output_dir={output_dir}", f"name={name}", *overrides],
                             base=get_preset("tiny"))
    except ConfigError as e:
        raise ToolError(f"bad training override: {e}") from None
    trainer = Trainer(config, progress=False)
    summary = trainer.fit()
    print(f"trained {summary.get('step')} steps, val/loss {summary.get('val/loss'):.4f} -> {trainer.run_dir}")
    return Path(trainer.run_dir)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scalar_tags(base: str) -> set[str]:
    "The scalar tags TensorBoard has loaded, over all runs ({} while it is still reading)."
    with contextlib.suppress(OSError, ValueError):
        data = json.load(urllib.request.urlopen(f"{base}/data/plugin/scalars/tags", timeout=3))
        return {tag for tags in data.values() for tag in tags}
    return set()


@contextlib.contextmanager
def tensorboard_server(logdir: Path, timeout: float = 60):
    "A real TensorBoard on 127.0.0.1:<free port> reading `logdir`; yields its base URL, stops it on exit."
    port = free_port()
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
           "--port", str(port), "--reload_interval", "1"]
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise ToolError(f"tensorboard exited with status {proc.returncode}:\n{log.read()[-2000:]}")
                with contextlib.suppress(OSError):
                    if urllib.request.urlopen(base, timeout=2).status == 200:
                        break
                if time.monotonic() > deadline:
                    raise ToolError(f"tensorboard did not answer on {base} within {timeout:.0f}s")
                time.sleep(0.3)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


# A chart counts as drawn when its card (scalar-card) names the tag, holds its plot (line-chart: a canvas
# TensorBoard draws into with WebGL or 2D) and axis tick labels (drawn once the data is in).
CARDS_JS = """(tags) => {
    const out = {};
    for (const card of document.querySelectorAll('scalar-card')) {
        const name = card.querySelector('tb-truncated-path');
        const tag = name ? name.textContent.replace(/\\s+/g, '') : '';
        if (!tags.includes(tag)) continue;
        const r = card.getBoundingClientRect();
        const drawn = card.querySelector('line-chart canvas') !== null
            && card.querySelectorAll('line-chart-axis text').length > 2;
        out[tag] = {x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height, drawn};
    }
    return out;
}"""


def shoot(base: str, out: Path, tags: tuple[str, ...], timeout: float = 60,
          viewport: tuple[int, int] = (1400, 1000)) -> dict:
    "Open TensorBoard's scalars in headless chromium, wait for the `tags` charts, save a PNG cropped to them."
    if not CHROMIUM.exists():
        raise ToolError(f"{CHROMIUM} is missing: install it (`apt-get install -y chromium`) or set TT_CHROMIUM")
    from playwright.sync_api import sync_playwright

    deadline = time.monotonic() + timeout
    while not set(tags) <= (loaded := scalar_tags(base)):
        if time.monotonic() > deadline:
            missing = sorted(set(tags) - loaded)
            raise ToolError(f"the run has no scalars {missing} (TensorBoard loaded: {sorted(loaded) or 'none'})")
        time.sleep(0.5)
    url = f"{base}/?darkMode=false#timeseries"  # the time-series dashboard, light theme
    with tempfile.TemporaryDirectory(prefix="tt-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=1.5)  # sharper text
        try:
            page = context.new_page()
            page.goto(url, wait_until="domcontentloaded")
            # Only the requested tags (the dashboard's own tag filter, a regex), without the settings pane.
            box = page.locator("input[placeholder='Filter tags (regex)']")
            box.wait_for(timeout=max(1, deadline - time.monotonic()) * 1000)
            box.fill("|".join(f"^{re.escape(t)}$" for t in tags))
            box.press("Escape")
            # Whole curves (no outlier clipping), no step cursor or data table; TensorBoard's own smoothing stays
            # (the smoothed line dark, the raw values light).
            for label in ("Ignore outliers in chart scaling", "Enable step selection and data table"):
                checkbox = page.locator("mat-checkbox", has_text=label).locator("input[type=checkbox]").first
                with contextlib.suppress(Exception):
                    if checkbox.is_checked(timeout=3000):
                        checkbox.click(timeout=3000)
            close = page.locator("button[aria-label='Close side pane']")
            if close.count():
                close.first.click()
            cards = {}
            while True:
                cards = page.evaluate(CARDS_JS, list(tags))
                if all(cards.get(t, {}).get("drawn") for t in tags):
                    break
                if time.monotonic() > deadline:
                    FAILED_PAGE.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(FAILED_PAGE))
                    raise ToolError(f"the charts {[t for t in tags if not cards.get(t, {}).get('drawn')]} did not "
                                    f"render within {timeout:.0f}s (the page as it was: {FAILED_PAGE})")
                page.wait_for_timeout(250)
            page.wait_for_timeout(1000)  # let the line animation settle
            cards = page.evaluate(CARDS_JS, list(tags))
            pad = 8
            x0 = max(0, min(c["x"] for c in cards.values()) - pad)
            y0 = max(0, min(c["y"] for c in cards.values()) - pad)
            x1 = max(c["x"] + c["w"] for c in cards.values()) + pad
            y1 = max(c["y"] + c["h"] for c in cards.values()) + pad
            png = page.screenshot(clip={"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0}, full_page=True)
        finally:
            context.close()
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    out.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return {"path": str(out), "size": out.stat().st_size, "width": image.width, "height": image.height}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="an existing run folder with TensorBoard events (default: train one)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"PNG to write (default {DEFAULT_OUT.relative_to(ROOT)})")
    parser.add_argument("--tags", nargs="+", default=list(DEFAULT_TAGS),
                        help="scalar tags to show (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=90, help="seconds to wait for TensorBoard and the charts")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides for the training run (tiny preset), e.g. training.max_steps=100")
    args = parser.parse_args(argv)
    try:
        with contextlib.ExitStack() as stack:
            if args.run is not None:
                if args.overrides:
                    raise ToolError("give either --run or training overrides, not both")
                run = args.run
                if not event_files(run):
                    raise ToolError(f"{run} holds no TensorBoard event files (events.out.tfevents.*): train with "
                                    "tracking.backend=tensorboard, or omit --run to train a run here")
            else:
                run = train_run(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tt-tb-"))), args.overrides)
            base = stack.enter_context(tensorboard_server(run, timeout=args.timeout))
            info = shoot(base, args.out, tuple(args.tags), timeout=args.timeout)
    except ToolError as e:
        print(f"screenshot_tensorboard: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {info['path']} ({info['width']}x{info['height']}, {info['size'] / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
