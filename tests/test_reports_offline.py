"""Every generated report HTML file works offline: no src/href of a script, link, img,
iframe or style to http(s) or ``//``, no remote ``@import`` / ``url()`` (the logic of the
shared acceptance check ``offline_scan.py``)."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from test_reports import generated

REMOTE = re.compile(r"^\s*(https?:)?//", re.I)
CSS = re.compile(r"(@import\s+(url\()?['\"]?|url\(\s*['\"]?)(https?:)?//", re.I)
KEYS = ("variant", "evil", "optimization", "walk_forward", "single", "portfolio")


class Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.bad: list[str] = []
        self.tags: dict[str, int] = {}

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        a = dict(attrs)
        for key in ("src", "data-src"):
            if a.get(key) and REMOTE.match(a[key]):
                self.bad.append(f"<{tag} {key}={a[key][:80]}>")
        if tag in ("link", "script", "style", "img", "iframe") and a.get("href") and REMOTE.match(a["href"]):
            self.bad.append(f"<{tag} href={a['href'][:80]}>")


def scan(text: str) -> tuple[list[str], dict[str, int]]:
    s = Scan()
    s.feed(text)
    return s.bad + [f"css {m.group(0)[:60]}" for m in CSS.finditer(text)], s.tags


@pytest.fixture(scope="module")
def html_files() -> list[Path]:
    folders = [generated(k).folder for k in KEYS]
    files = sorted(f for d in folders for f in d.rglob("*.html"))
    # index + pages of each report, the failed variant's partial notebook included
    assert len(files) >= 3 + 3 + 3 + 2 + 1
    assert any(f.name == "broken.html" for f in files)
    return files


@pytest.mark.slow
def test_every_generated_html_file_is_offline(html_files):
    bad = {}
    for f in html_files:
        found, tags = scan(f.read_text(encoding="utf-8", errors="replace"))
        if found:
            bad[str(f)] = found[:3]
        assert tags.get("script", 0) == 0, f"{f}: has <script> tags"
        assert tags.get("link", 0) == 0 and tags.get("iframe", 0) == 0, f
    assert not bad, bad


@pytest.mark.slow
def test_figures_are_embedded_png(html_files):
    for f in html_files:
        text = f.read_text(encoding="utf-8")
        srcs = re.findall(r"<img[^>]*\ssrc=['\"]([^'\"]*)", text)
        assert all(s.startswith("data:image/png;base64,") for s in srcs), f
        if f.name != "broken.html":
            assert srcs, f"{f.name}: no figure"


@pytest.mark.slow
def test_the_shared_acceptance_scanner_agrees(html_files):
    import subprocess
    import sys
    script = Path("/work/shared/acceptance/offline_scan.py")
    if not script.is_file():
        pytest.skip("the shared acceptance scanner is not on this machine")
    folders = sorted({str(f.parent) for f in html_files})
    out = subprocess.run([sys.executable, str(script), *folders], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
    assert f"{len(html_files)} html files, 0 remote references" in out.stdout


def test_scanner_and_cleaner_catch_remote_references():
    from metaflow_nb.reporting.export import make_offline, remote_references
    page = ("<html><head><script src='https://cdn.example/require.js'></script>"
            "<link rel='stylesheet' href='//fonts.example/css'>"
            "<style>@import url('https://fonts.googleapis.com/css?family=Roboto'); "
            "body{background:url(http://x/y.png)}</style></head>"
            "<body><img src='http://x/y.png'><iframe src='https://x'></iframe>"
            "<a href='https://example.com'>a plain link is fine</a></body></html>")
    mine = remote_references(page)
    theirs, _ = scan(page)
    assert len(mine) == len(theirs) == 6
    clean = make_offline(page)
    assert remote_references(clean) == [] and scan(clean)[0] == []
    assert "https://example.com" in clean  # hyperlinks stay


def test_our_exporter_drops_what_nbconverts_default_template_loads():
    import nbformat
    from nbconvert import HTMLExporter
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    from metaflow_nb.reporting.export import exporter, remote_references
    nb = new_notebook(cells=[new_markdown_cell("# Title $x^2$"), new_code_cell(
        "print(1)", outputs=[new_output("stream", name="stdout", text="1\n")])])
    nbformat.validate(nb)
    default, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    assert remote_references(default), "nbconvert's lab template is expected to load require.js/MathJax"
    ours, _ = exporter().from_notebook_node(nb)
    assert remote_references(ours) == []
    assert "print(1)" not in ours and "Title" in ours



@pytest.mark.parametrize("snippet", [
    "<img srcset='a.png 1x, https://evil.example/b.png 2x'>",
    "<video poster='https://evil.example/p.png'></video>",
    "<object data='//evil.example/o.swf'></object>",
    "<svg><image href='https://evil.example/i.png'/></svg>",
    "<svg><image xlink:href='https://evil.example/i.png'/></svg>",
    "<meta http-equiv='refresh' content='0; url=https://evil.example/'>",
    "<div style=\"background-image: image-set('https://evil.example/i.png' 1x)\"></div>",
    "<table background='https://evil.example/t.png'></table>",
])
def test_other_ways_a_page_loads_from_the_network_are_caught_and_cleaned(snippet):
    """Beside src, <link href> and CSS url(): srcset, poster, <object data>, an SVG image's
    href, a meta refresh, CSS image-set() and the old background attribute (a cell or a
    plugin's HTML may hold them)."""
    from metaflow_nb.reporting.export import make_offline, remote_references
    page = f"<html><body>{snippet}<a href='https://example.com'>link</a></body></html>"
    assert len(remote_references(page)) == 1, remote_references(page)
    clean = make_offline(page)
    assert remote_references(clean) == [] and "evil.example" not in clean and "https://example.com" in clean


def test_a_page_does_not_depend_on_the_injected_cells_random_id(tmp_path):
    """hunt36 F2: papermill gives its injected-parameters cell a random id, which the HTML
    carried: every papermill page (and its hash in the manifest) differed between two
    reports of the same inputs."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    from metaflow_nb.reporting.export import notebook_to_html

    pages = []
    for k, random_id in enumerate(("671d5f95", "11d758a6")):
        injected = new_code_cell("x = 1", id=random_id, metadata={"tags": ["injected-parameters"]})
        nb = new_notebook(cells=[new_markdown_cell("# title", id="intro"), injected, new_code_cell("x", id="show")])
        path = tmp_path / f"n{k}.ipynb"
        nbformat.write(nb, str(path))
        pages.append(notebook_to_html(path, tmp_path / f"n{k}.html", "t").read_bytes())
    assert b"671d5f95" not in pages[0] and pages[0] == pages[1]
    assert b'id="cell-id=intro"' in pages[0]   # the template's own ids stay


def test_a_failed_pages_error_cells_do_not_carry_random_ids(tmp_path):
    """hunt59 F4: papermill adds two error cells (tag papermill-error-cell-tag) with random
    ids to a notebook that failed: the failed variant's page differed between two reports
    of the same inputs, and so did its hash in the manifest."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    from metaflow_nb.reporting.export import notebook_to_html

    pages = []
    for k, ids in enumerate((("b30f942d", "941262b2"), ("923a66e2", "c3622115"))):
        tag = {"tags": ["papermill-error-cell-tag"]}
        nb = new_notebook(cells=[new_markdown_cell("An Exception was encountered", id=ids[0], metadata=tag),
                                 new_markdown_cell("# title", id="intro"),
                                 new_markdown_cell("Execution failed here", id=ids[1], metadata=tag),
                                 new_code_cell("x", id="show")])
        path = tmp_path / f"n{k}.ipynb"
        nbformat.write(nb, str(path))
        pages.append(notebook_to_html(path, tmp_path / f"n{k}.html", "t").read_bytes())
    assert b"b30f942d" not in pages[0] and pages[0] == pages[1]
    assert b'id="cell-id=intro"' in pages[0]
