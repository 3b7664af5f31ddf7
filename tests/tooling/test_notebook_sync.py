"""The package must be what nbdev_export makes of the notebooks; README.md must match index.ipynb and link every notebook."""
import json
import re
import shutil
import sys

from helpers import ROOT, run


def _copy_repo(dest):
    for name in ("settings.ini", "nbs", "tiny_transformer", "tools"):
        src = ROOT / name
        (shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
         if src.is_dir() else shutil.copy(src, dest / name))


def test_package_matches_notebooks():
    result = run([sys.executable, str(ROOT / "tools" / "check_export.py")], timeout=120)
    assert result.returncode == 0, result.stderr


def test_edited_notebook_without_export_is_caught(tmp_path):
    _copy_repo(tmp_path)
    nb_path = tmp_path / "nbs" / "01_model.ipynb"
    nb = json.loads(nb_path.read_text())
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code" and "class MLP" in "".join(c["source"]))
    cell["source"] = "".join(cell["source"]).replace("F.gelu(", "F.relu(")
    nb_path.write_text(json.dumps(nb))
    result = run([sys.executable, str(tmp_path / "tools" / "check_export.py"), "--root", str(tmp_path)], timeout=120)
    assert result.returncode == 1
    assert "tiny_transformer/model.py: differs from the notebooks" in result.stderr
    assert "F.relu(" in result.stderr and "make export" in result.stderr


def test_hand_edited_package_is_caught(tmp_path):
    _copy_repo(tmp_path)
    (tmp_path / "tiny_transformer" / "stray.py").write_text("x = 1\n")
    result = run([sys.executable, str(tmp_path / "tools" / "check_export.py"), "--root", str(tmp_path)], timeout=120)
    assert result.returncode == 1 and "stray.py: in the package but no notebook exports it" in result.stderr


def test_readme_is_generated_from_index():
    result = run([sys.executable, str(ROOT / "tools" / "nb2readme.py"), "--check"], timeout=60)
    assert result.returncode == 0, result.stderr
    readme = (ROOT / "README.md").read_text()
    assert "make train" in readme and "make test" in readme and "Colab" in readme


def test_readme_links_every_notebook():
    "The README's notebook table is the reader's map: each notebook in nbs/ is linked from it (00_core once was not)."
    readme = (ROOT / "README.md").read_text()
    linked = set(re.findall(r"\]\(nbs/([\w.-]+\.ipynb)\)", readme))
    missing = sorted(p.name for p in (ROOT / "nbs").glob("*.ipynb") if p.name != "index.ipynb" and p.name not in linked)
    assert not missing, (f"README.md does not link {missing}: add them to the table in nbs/index.ipynb "
                         "(a companion notebook can share its chapter's row), then run `make readme`")
