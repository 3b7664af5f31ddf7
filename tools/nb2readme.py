#!/usr/bin/env python
"""Write README.md from nbs/index.ipynb (nbdev_readme needs Quarto, which is not always installed).

Markdown cells are copied; visible code cells become fenced Python blocks followed by their text
output. Cells with `#| hide` are left out. `--check` exits 1 when README.md is out of date.

    python tools/nb2readme.py [--check]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "<!-- Generated from nbs/index.ipynb by tools/nb2readme.py: edit the notebook, then run `make readme`. -->\n\n"


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else value


def render(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    parts = []
    for cell in nb["cells"]:
        source = _text(cell["source"]).strip("\n")
        if cell["cell_type"] == "markdown":
            # index.ipynb links its sibling notebooks as `00_data.ipynb`; from the README they live in nbs/.
            parts.append(re.sub(r"\]\((?!https?://|nbs/)([\w.-]+\.ipynb)\)", r"](nbs/\1)", source))
        elif cell["cell_type"] == "code":
            lines = source.splitlines()
            if any(line.strip().replace(" ", "") in ("#|hide", "#|exporti") for line in lines):
                continue
            code = "\n".join(line for line in lines if not line.lstrip().startswith("#|"))
            parts.append(f"```python\n{code}\n```")
            out = "".join(_text(o.get("text", "")) for o in cell.get("outputs", []) if o.get("output_type") == "stream")
            if out.strip():
                parts.append(f"```\n{out.rstrip()}\n```")
    return HEADER + "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if README.md differs instead of writing it")
    args = parser.parse_args(argv)
    readme, text = ROOT / "README.md", render(ROOT / "nbs" / "index.ipynb")
    if args.check:
        if not readme.exists() or readme.read_text(encoding="utf-8") != text:
            print("README.md is out of date with nbs/index.ipynb: run `make readme` and commit it.", file=sys.stderr)
            return 1
        print("README.md matches nbs/index.ipynb")
        return 0
    readme.write_text(text, encoding="utf-8")
    print(f"wrote {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
