"""`import tiny_transformer` and every module must work with only the core dependencies installed."""
import json
import sys

from helpers import ROOT, run

OPTIONAL = ["wandb", "tensorboard", "ipywidgets", "matplotlib", "onnx", "onnxruntime", "onnxscript", "pandas",
            "fastapi", "uvicorn", "IPython"]

# A child interpreter in which the optional packages cannot be imported at all, as if not installed.
PROBE = f"""
import importlib, importlib.abc, json, pkgutil, sys
OPTIONAL = {OPTIONAL!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in OPTIONAL:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)")
sys.meta_path.insert(0, Block())
import tiny_transformer
after_top = sorted(m for m in OPTIONAL if m in sys.modules)
failed = {{}}
for info in pkgutil.walk_packages(tiny_transformer.__path__, "tiny_transformer."):
    try:
        importlib.import_module(info.name)
    except Exception as e:
        failed[info.name] = repr(e)
print(json.dumps({{"after_top": after_top, "failed": failed,
                  "loaded": sorted(m for m in OPTIONAL if m in sys.modules)}}))
"""


def test_import_without_optional_dependencies():
    result = run([sys.executable, "-c", PROBE], cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failed"] == {}, f"modules that need an optional dependency at import time: {report['failed']}"
    assert report["loaded"] == []


def test_the_blocker_really_blocks():
    # The probe is only meaningful if the optional packages are installed here and the blocker stops them.
    probe = PROBE.replace("import tiny_transformer", "import importlib\ntry:\n    import matplotlib\nexcept ModuleNotFoundError as e:\n    print(json.dumps({'blocked': str(e)})); raise SystemExit(0)")
    result = run([sys.executable, "-c", probe], cwd=ROOT, timeout=60)
    assert "blocked by the test" in result.stdout
