#!/usr/bin/env python
"""Build the docs site from the notebooks in nbs/ (`make docs`).

With Quarto on PATH this is `nbdev_docs`, the site that .github/workflows/deploy.yaml publishes.
Without Quarto (it cannot be installed on the offline build machines), the same nbdev processing
runs, and nbconvert renders the result:

1. nbdev's notebook processors (`nbdev.processors.FilterDefaults`, run per notebook by
   `nbdev.serve_drv.main`, exactly what `nbdev.serve.proc_nbs` does) write processed notebooks to
   `_proc/`: `#| hide` and `#| export` cells removed, a `show_doc` API reference after every exported
   definition, the title and subtitle moved into front matter.
2. Each processed notebook becomes one static HTML page in `_docs/` (named by nbdev's `output-file`,
   as Quarto would), with a sidebar listing every notebook in order, companion notebooks nested
   under their chapter (tools/docs_template/chapters.yml). Quarto cell options that nbdev leaves behind (`#| echo: false`,
   `#| output: asis`, `#| code-fold: true` with its `#| code-summary`: a solution folded in a
   `<details>` element, as Quarto folds it) are applied and then stripped, widget
   outputs are replaced by a static snapshot (the Output widgets' captured plots when the notebook
   holds widget state, else a short note), and links to the notebooks and to the published site are
   made relative so that the site works offline.

    python tools/build_docs.py [--nbs DIR] [--out DIR] [--proc DIR] [--no-quarto]

A notebook nbdev cannot process is reported by name (with the failing cell) and makes the build fail,
after the other pages are written.
"""
from __future__ import annotations

import argparse
import copy
import html
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = Path(__file__).resolve().parent / "docs_template"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

SITE_CSS = """
:root { --tt-sidebar-width: 250px; }
body.tt-page { margin: 0; padding: 0; display: block; }
.tt-sidebar { position: fixed; top: 0; left: 0; bottom: 0; width: var(--tt-sidebar-width); overflow-y: auto;
  box-sizing: border-box; padding: 1.2rem 1rem; background: #f6f7f9; border-right: 1px solid #dde1e6;
  font-family: var(--jp-ui-font-family); font-size: 14px; }
.tt-site-title { display: block; font-weight: 600; font-size: 17px; margin-bottom: 1rem; color: #1f2328;
  text-decoration: none; }
.tt-nav { list-style: none; margin: 0; padding: 0; }
.tt-nav li { margin: 0.15rem 0; }
.tt-nav a { display: block; padding: 0.3rem 0.5rem; border-radius: 4px; color: #24292f; text-decoration: none; }
.tt-nav a:hover { background: #e8ebef; }
.tt-nav a.tt-current { background: #dbe7fb; font-weight: 600; color: #0b4fb3; }
.tt-companions { list-style: none; margin: 0.1rem 0 0.4rem 0.9rem; padding: 0 0 0 0.4rem;
  border-left: 2px solid #dde1e6; font-size: 13px; }
.tt-companions a { padding: 0.2rem 0.5rem; color: #57606a; }
details.tt-fold { margin: 0.4rem 0 0.8rem; border: 1px solid #dde1e6; border-radius: 4px; }
details.tt-fold > summary { cursor: pointer; padding: 0.35rem 0.7rem; color: #0b4fb3; font-family: var(--jp-ui-font-family);
  font-size: 14px; user-select: none; }
details.tt-fold[open] > summary { border-bottom: 1px solid #dde1e6; }
.tt-main { margin-left: var(--tt-sidebar-width); padding: 1.5rem 2.5rem 3rem; max-width: 980px; }
.tt-header { margin-bottom: 1.5rem; border-bottom: 1px solid #dde1e6; }
.tt-title { font-size: 2.1rem; margin: 0.4rem 0; }
.tt-description { font-size: 1.1rem; color: #57606a; margin: 0 0 1rem; }
.tt-footer { margin-top: 3rem; font-size: 12px; color: #6e7781; }
.jp-RenderedMarkdown table { border-collapse: collapse; }
.jp-RenderedMarkdown pre { background: #f6f8fa; padding: 0.5rem 0.7rem; border-radius: 4px; overflow-x: auto; }
@media (max-width: 800px) {
  .tt-sidebar { position: static; width: auto; border-right: none; border-bottom: 1px solid #dde1e6; }
  .tt-main { margin-left: 0; padding: 1rem; }
}
"""

# A Quarto cell option (`#| key: value`) or an nbdev directive (`#| export`) at the start of a line.
_re_directive = re.compile(r"^\s*#\s*\|\s*(.*)$")
# Pandoc link attributes, as nbdev's show_doc writes them: [source](url){target="_blank" style="..."}
_re_link_attrs = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)\{([^}]*)\}")
_re_href = re.compile(r'(href|src)="([^"]*)"')
_re_anchor_link = re.compile(r'<a href="([\w.-]+\.html)?#([^"]+)"([^>]*)>(.*?)</a>', re.S)


def log(msg: str) -> None:
    print(f"build_docs: {msg}", flush=True)


def nbdev_config():
    from nbdev.config import get_config

    return get_config(path=ROOT)


def notebook_paths(nbs_path: Path) -> list[Path]:
    "Every notebook nbdev documents, index first, then in name (chapter) order."
    from nbdev.doclinks import nbglob

    paths = [Path(p) for p in nbglob(nbs_path, func=Path)]
    return sorted(paths, key=lambda p: (p.stem != "index", str(p.relative_to(nbs_path))))


def process_notebooks(nbs_path: Path, paths: list[Path], proc: Path) -> dict[Path, str]:
    """Run nbdev's own notebook processors (what `proc_nbs` runs) on each notebook, into `proc`.
    Returns {notebook: error} for those nbdev could not process (the others are still written)."""
    from nbdev.processors import FilterDefaults
    import nbdev.serve_drv

    shutil.rmtree(proc, ignore_errors=True)
    failed = {}
    for src in paths:
        dst = proc / src.relative_to(nbs_path)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            nbdev.serve_drv.main((src, dst, FilterDefaults))
        except Exception as exc:  # nbdev names the notebook and cell; add the cause
            os.environ.pop("IN_TEST", None)
            cause = f"\n  caused by {type(exc.__cause__).__name__}: {exc.__cause__}" if exc.__cause__ else ""
            failed[src] = f"{exc}{cause}"
    return failed


def mixed_import_cells(nb_path: Path) -> list[str]:
    """The cells nbdev warns about ("Found cells containing imports and other code"): not exported, with an
    import and other statements. nbdev runs each (hidden ones too) but not the plain cells between, so any of
    them that uses a name from another cell fails the build: the owner moves its imports to a cell of their own."""
    import ast
    import json

    found = []
    for i, cell in enumerate(json.loads(nb_path.read_text(encoding="utf-8"))["cells"]):
        src = "".join(cell["source"])
        if cell["cell_type"] != "code" or "nbdev_export()" in src or re.search(r"^#\|\s*export", src, re.M):
            continue
        try:
            tree = ast.parse("\n".join("" if l.lstrip().startswith(("%", "!")) else l for l in src.splitlines()))
        except SyntaxError:
            continue
        nodes = list(ast.walk(tree))
        if any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in nodes) and any(
                isinstance(n, (ast.Expr, ast.Assign)) for n in nodes):
            first = next((l for l in src.splitlines() if l.strip() and not l.startswith("#|")), "")
            found.append(f"cell {i}: {first[:70]}")  # its index in the .ipynb, from 0
    return found


def front_matter(nb) -> dict:
    "The YAML front matter nbdev's FrontmatterProc puts in the first raw cell (and remove that cell)."
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "raw" and cell.source.lstrip().startswith("---"):
            body = cell.source.strip().strip("-").strip()
            nb.cells.pop(i)
            return yaml.safe_load(body) or {}
    return {}


def split_options(source: str) -> tuple[dict, str]:
    "Leading `#|` lines of a code cell -> (Quarto options, source without any `#|` lines)."
    opts, kept, leading = {}, [], True
    for line in source.splitlines():
        m = _re_directive.match(line)
        if m:
            if leading and ":" in m.group(1):
                key, _, value = m.group(1).partition(":")
                opts[key.strip()] = value.strip().strip('"')
            continue
        leading = leading and not line.strip()
        kept.append(line)
    return opts, "\n".join(kept).strip("\n")


def link_attrs_to_html(text: str) -> str:
    "Pandoc's `[text](url){attrs}` (which mistune would print literally) -> an HTML anchor."
    def repl(m):
        attrs = " ".join(a for a in re.findall(r'(\w[\w-]*="[^"]*")', m.group(3)))
        return f'<a href="{html.escape(m.group(2))}" {attrs}>{html.escape(m.group(1))}</a>'
    return _re_link_attrs.sub(repl, text)


def markdown_of(outputs) -> str:
    return "\n\n".join("".join(o["data"]["text/markdown"]) if isinstance(o["data"]["text/markdown"], list)
                       else o["data"]["text/markdown"]
                       for o in outputs if "text/markdown" in o.get("data", {}))


# --- widgets: static snapshots --------------------------------------------------------------------

def widget_tree(model_id: str, state: dict, seen: set | None = None) -> list[dict]:
    "The states of widget `model_id` and of all its descendants (depth first), from saved widget state."
    seen = seen if seen is not None else set()
    if model_id in seen or model_id not in state:
        return []
    seen.add(model_id)
    model = state[model_id].get("state", {})
    found = [model]
    for child in model.get("children", []):
        if isinstance(child, str) and child.startswith("IPY_MODEL_"):
            found += widget_tree(child[len("IPY_MODEL_"):], state, seen)
    return found


def static_widget_outputs(output: dict, state: dict) -> list[dict]:
    "Replace one widget-view output by static outputs: the controls' values, the Output widgets' plots/text."
    import nbformat

    tree = widget_tree(output["data"][WIDGET_VIEW].get("model_id", ""), state)
    controls = [f"{m.get('description') or m.get('_model_name', '').replace('Model', '')} = `{m['value']}`"
                for m in tree if "value" in m and not isinstance(m["value"], (dict, list))]
    captured = [o for m in tree if m.get("_model_name") == "OutputModel"
                for o in m.get("outputs", []) if o.get("output_type") != "error"]
    if captured or controls:
        note = ("*Interactive widget, shown as a static snapshot"
                + (f" ({', '.join(controls)})" if controls else "")
                + ": run the notebook in JupyterLab or Colab to use the controls.*")
    else:
        note = "*Interactive widget: run the notebook in JupyterLab or Colab to see and use it.*"
    res = [nbformat.v4.new_output("display_data", data={"text/markdown": note}, metadata={})]
    res += [nbformat.from_dict(copy.deepcopy(o)) for o in captured]
    return res


# --- one notebook -> page --------------------------------------------------------------------------

def prepare_cells(nb) -> None:
    "Apply the Quarto cell options nbdev leaves behind, then strip every `#|` line; replace widgets."
    import nbformat

    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = link_attrs_to_html(cell.source)
            if cell.source.strip():
                cells.append(cell)
            continue
        if cell.cell_type != "code":
            continue
        opts, cell.source = split_options(cell.source)
        if opts.get("include") == "false":
            continue
        if opts.get("output") == "false":
            cell.outputs = []
        if opts.get("output") == "asis":  # show_doc: its markdown output is the page content
            md = markdown_of(cell.outputs)
            if md.strip():
                cells.append(nbformat.v4.new_markdown_cell(link_attrs_to_html(md)))
            continue
        outputs = []
        for o in cell.get("outputs", []):
            if WIDGET_VIEW in o.get("data", {}):
                outputs += static_widget_outputs(o, state)
            else:
                outputs.append(o)
        cell.outputs = outputs
        if opts.get("code-fold") in ("true", "show"):  # a solution: folded until the reader opens it
            cell.metadata["tt_fold"] = opts.get("code-summary") or "Code"  # Quarto's default summary
            cell.metadata["tt_fold_open"] = opts["code-fold"] == "show"
        if opts.get("echo") == "false" or not cell.source.strip():
            cell.metadata.setdefault("transient", {})["remove_source"] = True
        if cell.source.strip() or cell.outputs:
            cells.append(cell)
    nb.cells = cells
    nb.metadata.pop("widgets", None)


def rewrite_links(page_html: str, pages_by_stem: dict[str, str], site_url: str) -> str:
    "Links to notebooks (`nbs/00_data.ipynb`, `00_data.ipynb`) and to the published site -> relative pages."
    def repl(m):
        attr, url = m.group(1), html.unescape(m.group(2))
        if site_url and url.startswith(site_url + "/"):
            url = url[len(site_url) + 1:] or "index.html"
        path, sep, frag = url.partition("#")
        if path.endswith(".ipynb") and "://" not in path:
            stem = Path(path).stem
            if stem in pages_by_stem:
                path = pages_by_stem[stem]
        return f'{attr}="{html.escape(path + sep + frag, quote=True)}"'
    return _re_href.sub(repl, page_html)


def pandoc_id(text: str) -> str:
    "The identifier pandoc (so Quarto, and nbdev's doc links such as `model.html#tinytransformerlm`) gives a heading."
    text = re.sub(r"[^\w\s.-]", "", text.strip())
    return re.sub(r"^[^a-z]+", "", re.sub(r"\s+", "-", text).lower())


def add_pandoc_ids(page_html: str) -> str:
    "Give every heading the anchor Quarto would give it too (nbconvert keeps case and punctuation)."
    used = set(re.findall(r'id="([^"]*)"', page_html))

    def repl(m):
        inner = html.unescape(re.sub(r"<[^>]+>", "", m.group(3))).replace("\u00b6", "")
        ident = base = pandoc_id(inner) or "section"
        n = 0
        while ident in used and ident != m.group(2):
            n += 1
            ident = f"{base}-{n}"
        if ident == m.group(2):
            return m.group(0)
        used.add(ident)
        return f'<span id="{ident}" class="tt-anchor"></span>{m.group(0)}'
    return re.sub(r'<h([1-6]) id="([^"]*)">(.*?)</h\1>', repl, page_html, flags=re.S)


def resolve_anchors(files: list[Path]) -> None:
    """Point doc links at anchors that exist. nbdev links every backticked name it knows: private helpers
    (`_coerce`) and methods shown only with their class (`TrainingLogger.log_metrics`) have no section of
    their own. Such a link goes to the class's section when there is one, and otherwise keeps its code
    text without a link."""
    ids = {f.name: set(re.findall(r'id="([^"]*)"', f.read_text(encoding="utf-8"))) for f in files}
    for f in files:
        def repl(m, here=f.name):
            page, frag = m.group(1) or here, html.unescape(m.group(2))
            if page not in ids or frag in ids[page]:
                return m.group(0)
            owner = frag.split(".")[0]
            if "." in frag and owner in ids[page]:
                return f'<a href="{m.group(1) or ""}#{owner}"{m.group(3)}>{m.group(4)}</a>'
            return m.group(4)
        text = f.read_text(encoding="utf-8")
        fixed = _re_anchor_link.sub(repl, text)
        if fixed != text:
            f.write_text(fixed, encoding="utf-8")


def inline_markdown(text: str) -> str:
    "Escape a front-matter string for HTML, keeping its `code spans` (as Quarto renders a description)."
    parts = re.split(r"`([^`]+)`", text)
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


_re_nb_number = re.compile(r"^(\d+)([a-z]*)_")


def load_chapters(path: Path = TEMPLATES / "chapters.yml") -> dict[str, list[str]]:
    "{chapter notebook stem: [its companion notebooks' stems]}, from tools/docs_template/chapters.yml."
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    return {str(k): [str(c) for c in v or []] for k, v in (data or {}).items()}


def group_chapters(pages: list[dict], chapters: dict[str, list[str]]) -> list[dict]:
    """The sidebar: pages in order, each companion notebook nested under its chapter (in name order)
    instead of at the top level. `chapters` names the companions of each chapter; a notebook it does
    not name whose number has a letter (`03b_...`) is a companion of the unlettered notebook with that
    number when there is exactly one, and every other notebook is a top-level entry."""
    stem = {p["href"]: Path(p["source"]).stem for p in pages}
    href_of = {s: h for h, s in stem.items()}
    chapter_of = {href_of[c]: href_of[ch] for ch, comps in chapters.items() if ch in href_of
                  for c in comps if c in href_of and c != ch}
    for h, s in stem.items():
        m = _re_nb_number.match(s)
        if h in chapter_of or s in chapters or not m or not m.group(2):
            continue
        same = [o for o, t in stem.items() if (n := _re_nb_number.match(t)) and n.groups() == (m.group(1), "")]
        if len(same) == 1:
            chapter_of[h] = same[0]
    entries = {p["href"]: dict(href=p["href"], title=p["title"], companions=[]) for p in pages}
    for p in pages:
        if p["href"] in chapter_of:
            entries[chapter_of[p["href"]]]["companions"].append(entries[p["href"]])
    return [entries[p["href"]] for p in pages if p["href"] not in chapter_of]


def render_site(cfg, proc: Path, out: Path, paths: list[Path], nbs_path: Path) -> list[Path]:
    "One HTML page per processed notebook in `paths`, each with a sidebar listing them all."
    import nbformat
    from nbconvert import HTMLExporter

    pages = []
    for src in paths:
        rel = src.relative_to(nbs_path)
        nb = nbformat.read(proc / rel, as_version=4)
        fm = front_matter(nb)
        href = str(Path(fm.get("output-file") or rel.with_suffix(".html").name))
        pages.append(dict(nb=nb, href=href, title=str(fm.get("title") or src.stem),
                          description=str(fm.get("description") or ""), source=f"nbs/{rel}"))
    nav = group_chapters(pages, load_chapters())
    pages_by_stem = {Path(p["source"]).stem: p["href"] for p in pages}
    site_url = f"{cfg.get('doc_host', '')}{cfg.get('doc_baseurl', '')}".rstrip("/")

    # In a venv that reuses the system's site-packages, nbconvert's templates live under the base prefix.
    base_share = Path(sys.base_prefix) / "share" / "jupyter"
    if (base_share / "nbconvert" / "templates" / "lab").is_dir():
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (os.environ.get("JUPYTER_PATH"), str(base_share)) if p)
    exporter = HTMLExporter(extra_template_basedirs=[str(TEMPLATES)], template_name="tt_docs",
                            exclude_input_prompt=True, exclude_output_prompt=True)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    written = []
    for p in pages:
        prepare_cells(p["nb"])
        resources = {"site": {"title": cfg.get("title", cfg.lib_name), "pages": nav, "css": SITE_CSS},
                     "page": {**{k: p[k] for k in ("href", "title", "source")},
                              "description": inline_markdown(p["description"])},
                     "metadata": {"name": p["title"]}}
        body, _ = exporter.from_notebook_node(p["nb"], resources=resources)
        body = add_pandoc_ids(rewrite_links(body, pages_by_stem, site_url))
        (out / p["href"]).write_text(body, encoding="utf-8")
        written.append(out / p["href"])
    # Files the notebooks' markdown may refer to (images, data), as Quarto would copy them.
    for f in nbs_path.rglob("*"):
        rel = f.relative_to(nbs_path)
        if f.is_file() and f.suffix not in (".ipynb", ".yml", ".py") and not any(
                part.startswith((".", "_")) for part in rel.parts):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, out / rel)
    resolve_anchors(written)
    (out / ".nojekyll").touch()
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="site folder (default: settings.ini doc_path, _docs)")
    ap.add_argument("--proc", type=Path, help="processed notebooks (default: _proc, as nbdev)")
    ap.add_argument("--nbs", type=Path, help="notebooks folder (default: settings.ini nbs_path, nbs)")
    ap.add_argument("--no-quarto", action="store_true", help="use the static renderer even if Quarto is installed")
    args = ap.parse_args(argv)

    cfg = nbdev_config()
    if shutil.which("quarto") and not args.no_quarto and args.out is args.proc is args.nbs is None:
        log("Quarto found: running nbdev_docs")
        return subprocess.call([str(Path(sys.executable).parent / "nbdev_docs")], cwd=ROOT)

    t0 = time.time()
    out = (args.out or cfg.doc_path).resolve()
    proc = (args.proc or cfg.config_path / "_proc").resolve()
    nbs_path = (args.nbs or cfg.nbs_path).resolve()
    paths = notebook_paths(nbs_path)
    os.chdir(ROOT)
    failed = process_notebooks(nbs_path, paths, proc)
    written = render_site(cfg, proc, out, [p for p in paths if p not in failed], nbs_path)
    log(f"{len(written)} pages in {out} ({time.time() - t0:.1f}s; Quarto not used: "
        f"{'--no-quarto' if shutil.which('quarto') else 'not installed'})")
    for page in written:
        log(f"  {page.relative_to(out)}")
    if failed:
        for src, err in failed.items():
            log(f"FAILED: nbdev could not process {src.relative_to(nbs_path.parent)}: {err}")
            mixed = mixed_import_cells(src)
            if mixed:
                log(f"  its cells that mix imports with other code (nbdev runs them, skipping the cells between): {len(mixed)}")
                for line in mixed:
                    log(f"    {line}")
        log("nbdev runs the exported cells and every cell holding an import (to render show_doc); a cell that "
            "imports and also uses names defined in other cells fails. Keep imports in cells of their own.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
