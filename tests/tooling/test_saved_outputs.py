"""Saved notebook outputs teach: they must not show machine paths.

A reader sees the saved outputs of `nbs/*.ipynb` on GitHub and in the docs. A temp folder
(`/tmp/tmpab12cd`), a kernel's scratch file (`/tmp/ipykernel_123/456.py`), or a path on the machine
that last ran the notebook (`/work/...`, `/root/...`, `/home/...`) means nothing to that reader and
leaks where it was built. Demos write into a short relative folder (`runs/<notebook>`) or print paths
relative to their folder; known-noisy tool warnings are silenced in the one cell that triggers them.

Nothing is allow-listed.
"""
import json
import re
from pathlib import Path

import pytest

NBS = Path(__file__).resolve().parents[2] / "nbs"
# Any absolute temp path (/tmp/tmpab12, /tmp/ipykernel_1/, a named one like /tmp/tt-export-x/), and the homes and
# workspaces of the machines the notebooks run on.
MACHINE_PATH = re.compile(r"/tmp/|/work/|/root/|/home/")


def _output_texts(output: dict):
    "Every piece of text a saved output shows: stream text, text/plain, and an error's traceback."
    if output.get("output_type") == "stream":
        yield "".join(output.get("text", []))
    for key in ("text/plain",):
        data = output.get("data", {})
        if key in data:
            yield "".join(data[key])
    if output.get("output_type") == "error":
        yield f"{output.get('ename', '')}: {output.get('evalue', '')}"
        yield "\n".join(output.get("traceback", []))


def machine_paths(nb_path: Path) -> list[str]:
    "`cell N: <line>` for each output line of `nb_path` that shows a machine path."
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    hits = []
    for i, cell in enumerate(nb.get("cells", [])):
        for output in cell.get("outputs", []):
            for text in _output_texts(output):
                hits += [f"cell {i}: {line.strip()[:160]}" for line in text.splitlines() if MACHINE_PATH.search(line)]
    return hits


def test_scanner_finds_a_machine_path(tmp_path):
    "The scanner itself catches each pattern in each kind of output (so the real check can fail)."
    outputs = [
        {"output_type": "stream", "name": "stderr", "text": ["warning at /tmp/ipykernel_42/1.py:3\n"]},
        {"output_type": "execute_result", "data": {"text/plain": ["PosixPath('/tmp/tmpab12/x.pt')"]}},
        {"output_type": "error", "ename": "OSError", "evalue": "no /root/.cache", "traceback": ["/work/a.py"]},
        {"output_type": "stream", "name": "stdout", "text": ["saved runs/05_checkpoints/step_10.pt\n"]},
        {"output_type": "display_data", "data": {"text/plain": ["/home/me/x"]}},
        {"output_type": "stream", "name": "stdout", "text": ["wrote /tmp/tt-export-ab12/model.pt2\n"]},
    ]
    nb = {"cells": [{"cell_type": "code", "source": "open('/tmp/tmpX')", "outputs": outputs}], "nbformat": 4}
    path = tmp_path / "demo.ipynb"
    path.write_text(json.dumps(nb))
    hits = machine_paths(path)
    assert len(hits) == 6, hits  # the relative runs/ path is fine; the source line is not an output
    assert not any("runs/05_checkpoints" in h for h in hits)


@pytest.mark.parametrize("nb_path", sorted(NBS.glob("*.ipynb")), ids=lambda p: p.name)
def test_saved_outputs_show_no_machine_paths(nb_path):
    hits = machine_paths(nb_path)
    assert not hits, f"{nb_path.name}: saved outputs show machine paths; write demos under a relative folder:\n" + "\n".join(hits)
