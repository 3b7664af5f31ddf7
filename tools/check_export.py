#!/usr/bin/env python
"""Check that tiny_transformer/ is what nbdev_export makes of nbs/, without touching the working tree.

The notebooks are the source; the package is generated. This exports a copy of the notebooks into a
temporary folder and compares the result with the committed package, file by file. Exit status 1 and
a message naming each stale file when they differ.

    python tools/check_export.py [--root PATH]
"""
from __future__ import annotations

import argparse
import configparser
import difflib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def _lib_path(root: Path) -> str:
    cfg = configparser.ConfigParser(delimiters=["="])
    cfg.read(root / "settings.ini", encoding="utf-8")
    return cfg["DEFAULT"].get("lib_path", cfg["DEFAULT"]["lib_name"])


def _python_files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text(encoding="utf-8")
            for p in sorted(folder.rglob("*.py")) if "__pycache__" not in p.parts}


def export_diff(root: str | Path) -> list[str]:
    "Problems found: one line per package file that differs from a fresh export of the notebooks."
    root = Path(root).resolve()
    lib = _lib_path(root)
    exporter = Path(sys.executable).with_name("nbdev_export")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copy(root / "settings.ini", tmp / "settings.ini")
        shutil.copytree(root / "nbs", tmp / "nbs", ignore=shutil.ignore_patterns(".ipynb_checkpoints", "_*"))
        result = subprocess.run([str(exporter) if exporter.exists() else "nbdev_export"], cwd=tmp,
                                capture_output=True, text=True)
        if result.returncode != 0:
            return [f"nbdev_export failed on a copy of the notebooks:\n{result.stderr.strip()}"]
        fresh = _python_files(tmp / lib)
    current = _python_files(root / lib)
    problems = []
    for name in sorted(set(fresh) | set(current)):
        if name not in current:
            problems.append(f"{lib}/{name}: exported from the notebooks but missing from the package")
        elif name not in fresh:
            problems.append(f"{lib}/{name}: in the package but no notebook exports it")
        elif fresh[name] != current[name]:
            diff = difflib.unified_diff(current[name].splitlines(), fresh[name].splitlines(),
                                        f"{lib}/{name} (committed)", f"{lib}/{name} (from notebooks)", lineterm="", n=1)
            problems.append(f"{lib}/{name}: differs from the notebooks\n" + "\n".join(list(diff)[:40]))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=Path(__file__).resolve().parents[1], type=Path, help="repository root")
    args = parser.parse_args(argv)
    problems = export_diff(args.root)
    if problems:
        print("The package does not match the notebooks (a notebook was edited without re-exporting,\n"
              "or a package file was edited by hand). Run `make export` (nbdev_export) and commit the result.\n",
              file=sys.stderr)
        print("\n\n".join(problems), file=sys.stderr)
        return 1
    print("package matches the notebooks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
