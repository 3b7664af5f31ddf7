"""The docs site, in a real browser: build it once (tools/build_docs.py, the `make docs` renderer
used when Quarto is absent), serve it with http.server on 127.0.0.1, and visit every page in headless
chromium. Screenshots land in test-artifacts/screenshots/docs-<page>.png.
"""
from __future__ import annotations

import json
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest

from browser import browser_context, ensure_chromium, screenshot_path, serve_directory
from helpers import ROOT, run

pytestmark = [pytest.mark.slow, pytest.mark.browser]

NBS = sorted((ROOT / "nbs").glob("*.ipynb"), key=lambda p: (p.stem != "index", p.name))  # the sidebar's order
# Text that must never reach a reader: nbdev/Quarto directives and nbval markers.
LEAKS = re.compile(r"#\s*\||NBVAL_|nbval-(skip|ignore-output|check-output|raise)|\{target=")
# Text that only `#| hide` cells hold (the Colab install cell, the export cell): hidden cells must not show.
# (A visible cell may mention google.colab: 07_training's TensorBoard-in-Colab cell does.)
HIDDEN = ('%pip install -q "tiny_transformer[all]', "nbdev_export()")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "Build the site once into a temporary folder (the static renderer, whether or not Quarto is installed)."
    tmp = tmp_path_factory.mktemp("docs")
    out, proc = tmp / "_docs", tmp / "_proc"
    res = run([sys.executable, str(ROOT / "tools" / "build_docs.py"), "--no-quarto", "--out", str(out),
               "--proc", str(proc)], timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def visited(site):
    "Visit every page once in chromium; record console errors, text, images, links and anchors per page."
    ensure_chromium()
    pages = sorted(p.name for p in site.glob("*.html"))
    results = {}
    with serve_directory(site) as base, browser_context() as context:
        for name in pages:
            page = context.new_page()
            errors = []
            page.on("console", lambda msg, errors=errors: msg.type == "error" and errors.append(msg.text))
            page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
            page.on("requestfailed", lambda req, errors=errors: errors.append(f"request failed: {req.url}"))
            response = page.goto(f"{base}/{name}", wait_until="load")
            page.wait_for_load_state("networkidle")
            # The solution folds as a reader first sees them: closed, their code not rendered.
            folds = page.evaluate("""() => [...document.querySelectorAll('details.tt-fold')].map(d => {
                const code = d.querySelector('.jp-InputArea');
                const exercise = [...document.querySelectorAll('h1, h2, h3, h4')].some(
                    h => /Exercise/.test(h.innerText) && (h.compareDocumentPosition(d) & Node.DOCUMENT_POSITION_FOLLOWING));
                return {summary: d.querySelector(':scope > summary').innerText.trim(), open: d.open,
                        codeShown: !!code && code.checkVisibility(), afterExercise: exercise};
            })""")
            # Everything else is checked with the folds open, so the solutions' text is checked too.
            page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
            info = page.evaluate("""() => ({
                text: document.body.innerText,
                images: [...document.images].map(i => ({src: i.src.slice(0, 80), ok: i.complete && i.naturalWidth > 0})),
                links: [...document.querySelectorAll('a[href]')].map(a => a.href),
                ids: [...document.querySelectorAll('[id]')].map(e => e.id),
                nav: [...document.querySelectorAll('.tt-sidebar .tt-nav > li')].map(li => {
                    const a = li.querySelector(':scope > a'), left = a.getBoundingClientRect().left;
                    return {href: a.getAttribute('href'), companions: [...li.querySelectorAll(':scope > ol a')].map(
                        c => ({href: c.getAttribute('href'), indent: c.getBoundingClientRect().left - left}))};
                }),
                title: (document.querySelector('.tt-title') || {}).innerText || '',
                apiHeadings: document.querySelectorAll('.jp-RenderedMarkdown h3').length,
                codeCells: document.querySelectorAll('.jp-CodeCell .jp-InputArea').length,
                widgetPlaceholders: document.body.innerText.includes('Loading widget'),
            })""")
            page.screenshot(path=str(screenshot_path(f"docs-{Path(name).stem}.png")), full_page=True)
            results[name] = dict(status=response.status, errors=errors, folds=folds, **info)
            page.close()
        # Every same-origin link target, fetched over real HTTP.
        targets = {urldefrag(l)[0] for r in results.values() for l in r["links"] if l.startswith(base)}
        statuses = {}
        for url in sorted(targets):
            try:
                statuses[url] = urllib.request.urlopen(url, timeout=10).status
            except urllib.error.HTTPError as e:
                statuses[url] = e.code
    return dict(base=base, pages=results, statuses=statuses)


def visible_images(nb: Path) -> int:
    "Image outputs of the cells a docs reader sees (not hidden, exported or output-suppressed)."
    count = 0
    for cell in json.loads(nb.read_text())["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] != "code" or re.search(r"^#\|\s*(hide|export|exporti|default_exp)\b|^#\|\s*(include|output):\s*false",
                                                     src, re.M):
            continue
        count += sum(1 for o in cell.get("outputs", []) if {"image/png", "image/jpeg"} & set(o.get("data", {})))
    return count


def solution_cells(nb: Path) -> int:
    "Code cells Quarto folds (`#| code-fold: true`): the exercises' solutions."
    return sum(1 for cell in json.loads(nb.read_text())["cells"] if cell["cell_type"] == "code"
               and re.search(r"^#\|\s*code-fold:\s*true\b", "".join(cell["source"]), re.M))


def has_exercises(nb: Path) -> bool:
    return any(cell["cell_type"] == "markdown" and re.search(r"^#+\s.*\bExercises?\b", "".join(cell["source"]), re.M)
               for cell in json.loads(nb.read_text())["cells"])


def chapters() -> dict[str, list[str]]:
    "tools/docs_template/chapters.yml, restricted to the notebooks in nbs/: {chapter page: [companion pages]}."
    import yaml

    page = dict(zip((nb.stem for nb in NBS), expected_pages()))
    data = yaml.safe_load((ROOT / "tools" / "docs_template" / "chapters.yml").read_text())
    return {page[ch]: [page[c] for c in comps or [] if c in page] for ch, comps in data.items() if ch in page}


def expected_pages() -> list[str]:
    "The page nbdev names for each notebook (its front matter's output-file, as Quarto would: 03_logging -> logging.html)."
    from nbdev.doclinks import _nbpath2html

    return [_nbpath2html(Path(nb.name)).name for nb in NBS]


def test_every_notebook_has_a_page_in_the_sidebar(visited):
    """Every notebook once in the sidebar: chapters at the top level, index first then in name order, each
    with its companion notebooks (tools/docs_template/chapters.yml) nested and indented under it."""
    pages, order = visited["pages"], expected_pages()
    assert sorted(pages) == sorted(order)
    grouping = chapters()
    companions = {c for comps in grouping.values() for c in comps}
    for name, page in pages.items():
        assert page["status"] == 200
        top = [entry["href"] for entry in page["nav"]]
        listed = top + [c["href"] for entry in page["nav"] for c in entry["companions"]]
        assert sorted(listed) == sorted(order), f"{name}: the sidebar must list every notebook exactly once"
        assert top == [p for p in order if p in top] and top[0] == "index.html", f"{name}: chapters out of order: {top}"
        for entry in page["nav"]:
            nested = [c["href"] for c in entry["companions"]]
            assert set(nested) == set(grouping.get(entry["href"], [])) | (set(nested) - companions), \
                f"{name}: {entry['href']} should have the companions {grouping.get(entry['href'], [])}, has {nested}"
            assert nested == [p for p in order if p in nested], f"{name}: companions of {entry['href']} out of order"
            assert all(c["indent"] >= 8 for c in entry["companions"]), f"{name}: companions of {entry['href']} not indented"
        assert page["title"].strip(), f"{name} has no title"
    assert companions and companions.isdisjoint(grouping), "chapters.yml: a chapter cannot be a companion"


def test_solutions_are_folded(visited):
    """Each solution cell (`#| code-fold: true`) is one fold on its page, closed, its code hidden, after an
    exercise heading; every notebook with exercises has solutions, and as many folds as solutions."""
    for nb, name in zip(NBS, expected_pages()):
        folds, n = visited["pages"][name]["folds"], solution_cells(nb)
        assert len(folds) == n, f"{name}: {len(folds)} folds on the page, {nb.name} has {n} solution cells"
        if has_exercises(nb):
            assert n > 0, f"{nb.name} has exercises but no folded solution (`#| code-fold: true`)"
        for i, fold in enumerate(folds):
            assert fold["summary"] and not fold["open"] and not fold["codeShown"], f"{name}: solution {i + 1} is not folded: {fold}"
            assert fold["afterExercise"], f"{name}: fold {i + 1} ({fold['summary']!r}) is not under an exercise heading"


def test_a_solution_opens_when_its_summary_is_clicked(site):
    "In the browser: a solution's code and output are hidden until the reader clicks its summary, shown after."
    page_name = next(name for nb, name in zip(NBS, expected_pages())
                     if any('code-summary: "Show solution"' in "".join(c["source"]) for c in json.loads(nb.read_text())["cells"]))
    with serve_directory(site) as base, browser_context() as context:
        page = context.new_page()
        page.goto(f"{base}/{page_name}", wait_until="load")
        fold = page.locator("details.tt-fold").first
        summary, code = fold.locator(":scope > summary"), fold.locator(".jp-InputArea").first
        assert summary.inner_text().strip() == "Show solution"
        assert summary.is_visible() and not code.is_visible()
        outputs = fold.locator(".jp-OutputArea-output")
        assert outputs.count() > 0 and not outputs.first.is_visible(), "the solution's output should be folded too"
        summary.click()
        code.wait_for(state="visible", timeout=5000)
        assert code.is_visible() and outputs.first.is_visible() and fold.evaluate("d => d.open")
        page.screenshot(path=str(screenshot_path("docs-solution-open.png")), full_page=False)
        summary.click()
        code.wait_for(state="hidden", timeout=5000)


@pytest.mark.parametrize("name", expected_pages())
def test_page_renders_cleanly(visited, name):
    page = visited["pages"][name]
    assert page["errors"] == [], f"{name}: console errors {page['errors']}"
    leak = LEAKS.search(page["text"])
    assert leak is None, f"{name} shows directive/marker text: ...{page['text'][max(0, leak.start() - 80):leak.end() + 80]}..."
    shown = [h for h in HIDDEN if h in page["text"]]
    assert not shown, f"{name} shows the content of hidden cells: {shown}"
    assert not page["widgetPlaceholders"], f"{name} shows a 'Loading widget' placeholder"
    broken = [i["src"] for i in page["images"] if not i["ok"]]
    assert not broken, f"{name}: images that did not load: {broken}"


def test_internal_links_resolve(visited):
    base, pages, statuses = visited["base"], visited["pages"], visited["statuses"]
    assert statuses, "no internal links at all: the sidebar alone should give some"
    bad = {url: code for url, code in statuses.items() if code != 200}
    assert not bad, f"internal links that do not resolve: {bad}"
    # A link to an anchor on a page must land on an element with that id.
    for name, page in pages.items():
        for link in page["links"]:
            url, frag = urldefrag(link)
            if url.startswith(base) and frag:
                target = pages.get(urlparse(url).path.lstrip("/") or "index.html")
                assert target is not None and frag in target["ids"], f"{name}: link {link} has no target #{frag}"


def test_api_reference_code_and_plots(visited):
    pages = visited["pages"]
    modules = [p for p in expected_pages() if p != "index.html"]
    reexport_only = {"utils.html"}  # 05a_utils only gathers names documented on their own pages
    for name in modules:  # every module page documents its exported names (nbdev's show_doc)
        if name not in reexport_only:
            assert pages[name]["apiHeadings"] > 0, f"{name} has no show_doc API reference"
        assert pages[name]["codeCells"] > 0, f"{name} shows no code"
    assert "TinyTransformerLM" in pages["model.html"]["text"]
    for nb, name in zip(NBS, expected_pages()):  # every plot a reader should see is on the page, loaded
        loaded = sum(i["ok"] for i in pages[name]["images"])
        assert loaded >= visible_images(nb), f"{name}: {loaded} images shown, {nb.name} has {visible_images(nb)} plots"


def test_widget_outputs_become_static_snapshots(tmp_path):
    """A widget notebook executed with its widget state saved (as `make nbs` does) renders its Output widget's
    plot as a plain image, with no 'Loading widget' placeholder and no JavaScript widget manager."""
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    res = run(["jupyter", "nbconvert", "--to", "notebook", "--execute", str(ROOT / "tests/fixtures/widget_slider.ipynb"),
               "--output-dir", str(nbs)], timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    res = run([sys.executable, str(ROOT / "tools" / "build_docs.py"), "--no-quarto", "--nbs", str(nbs),
               "--out", str(tmp_path / "_docs"), "--proc", str(tmp_path / "_proc")], timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    html = (tmp_path / "_docs" / "widget_slider.html").read_text()
    assert "application/vnd.jupyter.widget" not in html and "<script" not in html
    with serve_directory(tmp_path / "_docs") as base, browser_context() as context:
        page = context.new_page()
        errors = []
        page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        page.goto(f"{base}/widget_slider.html", wait_until="load")
        images = page.evaluate("[...document.images].map(i => i.complete && i.naturalWidth > 0)")
        text = page.inner_text("body")
        page.screenshot(path=str(screenshot_path("docs-widget-static.png")), full_page=True)
    assert errors == []
    assert images == [True], "the Output widget's plot should be one loaded image"
    assert "Loading widget" not in text and "static snapshot (frequency = 1)" in text


def test_quarto_configuration_for_nbdev_docs():
    "What `nbdev_docs` (and so the deploy workflow) needs in nbs/, consistent with settings.ini."
    import yaml
    from nbdev.config import get_config
    from nbdev.quarto import _nbdev_yml

    cfg = get_config(path=ROOT)
    quarto = yaml.safe_load((ROOT / "nbs" / "_quarto.yml").read_text())
    assert quarto["project"]["type"] == "website"
    assert (ROOT / "nbs" / quarto["format"]["html"]["css"]).is_file()
    assert set(quarto["metadata-files"]) >= {"nbdev.yml", "sidebar.yml"}
    # nbdev.yml is regenerated from settings.ini by nbdev_docs: the committed copy must match it.
    vals = {k: cfg[k] for k in ["title", "description", "branch", "git_url", "doc_host", "doc_baseurl"]}
    assert (ROOT / "nbs" / "nbdev.yml").read_text() == _nbdev_yml.format(doc_path=cfg.doc_path.name, **vals)
    deploy = yaml.safe_load((ROOT / ".github" / "workflows" / "deploy.yaml").read_text())
    steps = deploy["jobs"]["build"]["steps"]
    assert any("nbdev_docs" in s.get("run", "") for s in steps)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == cfg.doc_path.name == "_docs"


def test_build_names_a_notebook_nbdev_cannot_process(tmp_path):
    """nbdev runs every cell holding an import to render show_doc; one that also uses a name from another
    cell fails. The build says which notebook and why, still writes the other pages, and exits non-zero."""
    import nbformat

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name, cells in [("00_good", ["#| default_exp good", "#| export\ndef hello():\n    \"Say hello.\"\n    return 1"]),
                        ("01_bad", ["#| default_exp bad", "#| export\ndef f():\n    \"Doc.\"\n    return 2",
                                    "x = 3", "import math\nprint(math.sqrt(x))"])]:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {name}\n> A test notebook.")]
                                      + [nbformat.v4.new_code_cell(c) for c in cells])
        nb.metadata["kernelspec"] = {"display_name": "python3", "language": "python", "name": "python3"}
        nbformat.write(nb, nbs / f"{name}.ipynb")
    res = run([sys.executable, str(ROOT / "tools" / "build_docs.py"), "--no-quarto", "--nbs", str(nbs),
               "--out", str(tmp_path / "_docs"), "--proc", str(tmp_path / "_proc")], timeout=300, cwd=ROOT)
    assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]
    assert "FAILED: nbdev could not process nbs/01_bad.ipynb" in res.stdout
    assert "NameError: name 'x' is not defined" in res.stdout
    assert "cells that mix imports with other code (nbdev runs them, skipping the cells between): 1" in res.stdout
    assert "cell 4: import math" in res.stdout  # the notebook's cell to split, counted as Jupyter shows them (from 0)
    assert (tmp_path / "_docs" / "good.html").is_file() and not (tmp_path / "_docs" / "bad.html").exists()


def test_readme_table_groups_notebooks_as_the_sidebar():
    """The README's notebook table (nbs/index.ipynb) and the docs sidebar group the notebooks the same way:
    a bold chapter row, then an indented row (`&emsp;↳`) for each of its companions in chapters.yml."""
    import yaml

    index = "".join("".join(c["source"]) for c in json.loads((ROOT / "nbs" / "index.ipynb").read_text())["cells"])
    rows = re.findall(r"^\| (\*\*|&emsp;↳ )\[([\w.-]+)\]\(([\w.-]+)\.ipynb\)", index, re.M)
    assert all(label == stem for _, label, stem in rows), "a row's link text should be its notebook's name"
    table, chapter = {}, None
    for kind, _, stem in rows:
        if kind == "**":
            chapter = stem
            table[chapter] = []
        else:
            assert chapter is not None, f"companion row {stem} before any chapter row"
            table[chapter].append(stem)
    present = {nb.stem for nb in NBS}
    grouping = yaml.safe_load((ROOT / "tools" / "docs_template" / "chapters.yml").read_text())
    expected = {ch: [c for c in comps or [] if c in present] for ch, comps in grouping.items() if ch in present}
    assert {ch: sorted(c) for ch, c in table.items()} == {ch: sorted(c) for ch, c in expected.items()}
    assert sorted(s for s in present if s != "index") == sorted([*table, *(c for cs in table.values() for c in cs)])
