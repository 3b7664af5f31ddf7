"""Every notebook in nbs/ follows the house conventions, so that it works as a docs page, in JupyterLab
and in Colab: an "Open in Colab" link built from settings.ini, an install cell that runs only inside
Colab, a title and subtitle, a `#| default_exp` when the notebook exports code, the python3 kernel,
and the exact bytes nbdev_clean leaves behind. (That each runs top to bottom in a fresh kernel is the
nbval run over nbs/ in `make test`.)
"""
from __future__ import annotations

import configparser
import json
import re
import shutil
from pathlib import Path

import pytest

from helpers import ROOT, run

NBS = sorted((ROOT / "nbs").glob("*.ipynb"))
IDS = [p.stem for p in NBS]
SETTINGS = configparser.ConfigParser()
SETTINGS.read(ROOT / "settings.ini")
CFG = SETTINGS["DEFAULT"]
COLAB_GUARD = re.compile(r"""^if\s+["']google\.colab["']\s+in\s+sys\.modules\s*:""", re.M)
PIP = re.compile(r"^(\s*)[%!]\s*pip\s+install\b(.*)$", re.M)


def cells(nb: Path) -> list[dict]:
    return [dict(c, source="".join(c["source"])) for c in json.loads(nb.read_text())["cells"]]


def colab_url(nb: Path) -> str:
    "The Colab address of a notebook, from settings.ini's user, repo and branch."
    return (f"https://colab.research.google.com/github/{CFG['user']}/{CFG['repo']}/blob/"
            f"{CFG.get('branch', 'main')}/{CFG.get('nbs_path', 'nbs')}/{nb.name}")


def test_there_are_notebooks():
    assert len(NBS) >= 4 and (ROOT / "nbs" / "index.ipynb") in NBS


@pytest.mark.parametrize("nb", NBS, ids=IDS)
def test_open_in_colab_link(nb):
    markdown = [c["source"] for c in cells(nb)[:4] if c["cell_type"] == "markdown"]
    link = f"[Open in Colab]({colab_url(nb)})"
    assert any(link in src for src in markdown), f"{nb.name}: one of its first cells must hold {link}"


@pytest.mark.parametrize("nb", NBS, ids=IDS)
def test_colab_install_cell(nb):
    "A code cell installs the package, only inside Colab, before any code uses the package."
    code = [c for c in cells(nb) if c["cell_type"] == "code"]
    installs = [i for i, c in enumerate(code) if PIP.search(c["source"])]
    assert installs, f"{nb.name} has no code cell that pip-installs the package for Colab"
    first = installs[0]
    src = code[first]["source"]
    assert COLAB_GUARD.search(src), f'{nb.name}: the install must sit under `if "google.colab" in sys.modules:`'
    assert re.search(r"^import sys\b|^import .*\bsys\b", src, re.M), f"{nb.name}: the install cell must import sys"
    guard_at = COLAB_GUARD.search(src).start()
    for m in PIP.finditer(src):
        assert m.start() > guard_at and m.group(1), f"{nb.name}: `{m.group(0).strip()}` runs outside the Colab guard"
        assert CFG["lib_name"] in m.group(2) and f"git+{CFG['git_url']}" in m.group(2), \
            f"{nb.name}: the Colab cell should install {CFG['lib_name']} from git+{CFG['git_url']}"
    uses = [i for i, c in enumerate(code) if re.search(rf"\b{CFG['lib_name']}\b", c["source"]) and i != first
            and not c["source"].lstrip().startswith("#| default_exp")]
    assert not uses or first < uses[0], f"{nb.name}: the Colab install cell must come before the first use of the package"


@pytest.mark.parametrize("nb", NBS, ids=IDS)
def test_title_and_subtitle(nb):
    first_md = next(c["source"] for c in cells(nb) if c["cell_type"] == "markdown")
    lines = [l for l in first_md.strip().splitlines() if l.strip()]
    assert re.match(r"^# \S", lines[0]), f"{nb.name}: the first markdown cell must start with a `# Title`"
    assert len(lines) > 1 and re.match(r"^> \S", lines[1]), f"{nb.name}: a `> subtitle` line must follow the title"


EXPORT = re.compile(r"^#\|\s*export[si]?\b", re.M)


@pytest.mark.parametrize("nb", NBS, ids=IDS)
def test_default_exp_and_kernel(nb):
    """A notebook that exports code opens with `#| default_exp <module>`. One that exports nothing (index, the
    capstone) has none: nbdev never writes a module without exported cells, so the directive would name a module
    that does not exist."""
    meta = json.loads(nb.read_text())["metadata"]
    assert meta.get("kernelspec", {}).get("name") == "python3", f"{nb.name}: kernelspec must be python3"
    code = [c["source"] for c in cells(nb) if c["cell_type"] == "code"]
    has_exp = bool(code) and re.match(r"^#\|\s*default_exp\s+\S+", code[0].strip())
    exports = any(EXPORT.search(src) for src in code)
    if nb.stem == "index":
        assert not exports and not any("default_exp" in src for src in code), \
            "index.ipynb documents the project; it exports nothing"
    elif exports:
        assert has_exp, f"{nb.name}: the first code cell must be `#| default_exp <module>`"
    else:
        assert not any("default_exp" in src for src in code), \
            f"{nb.name} exports nothing: remove `#| default_exp` (nbdev would never write that module)"


@pytest.mark.parametrize("nb", NBS, ids=IDS)
def test_no_nbval_comment_markers(nb):
    "nbval markers belong in cell tags; as comments they leak into the docs and the exported code."
    leaks = [c["source"][:80] for c in cells(nb) if re.search(r"#\s*NBVAL_", c["source"])]
    assert not leaks, f"{nb.name}: use cell tags (nbval-skip, ...) instead of # NBVAL_ comments: {leaks}"


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory):
    "Copies of the notebooks after nbdev_clean, run with this project's settings.ini on a temporary folder."
    tmp = tmp_path_factory.mktemp("clean") / "nbs"
    tmp.mkdir()
    for nb in NBS:
        shutil.copy2(nb, tmp / nb.name)
    res = run(["nbdev_clean", "--fname", str(tmp)], timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return tmp


@pytest.mark.parametrize("nb", NBS, ids=IDS)
def test_clean_as_nbdev_clean_leaves_it(nb, cleaned):
    assert (cleaned / nb.name).read_bytes() == nb.read_bytes(), \
        f"{nb.name} is not clean: run `.venv/bin/nbdev_clean` and commit the result"
