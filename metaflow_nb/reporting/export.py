"""Executed notebook -> self-contained, offline HTML with the code cells hidden.

nbconvert's ``lab`` template, minus everything that loads from the network: require.js,
MathJax, mermaid and the widget manager are template blocks overridden empty here; the
CSS is inlined by the template already and figures are base64 PNG outputs. The rendered
page is then checked (and, as a last resort, cleaned) for remote references, so a page
never phones home even if a cell displays HTML that does.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Optional

from ..services.files import write_text

#: our template: lab's page with every remote script block emptied
OFFLINE_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block extra_css %}
<style type="text/css">
body.jp-Notebook { max-width: 1180px; margin: 0 auto; padding: 12px 24px; }
.mf-page table { border-collapse: collapse; }
.jp-RenderedHTMLCommon .mf-page td, .jp-RenderedHTMLCommon .mf-page th { white-space: nowrap; }
.jp-OutputArea-output { overflow-x: auto; }
</style>
{% endblock extra_css %}
"""
TEMPLATE_NAME = "mf_offline.html.j2"

REMOTE = re.compile(r"^\s*(https?:)?//", re.I)
CSS_REMOTE = re.compile(r"(@import\s+(url\()?['\"]?|url\(\s*['\"]?)(https?:)?//", re.I)
_SCRIPT_SRC = re.compile(r"<script\b[^>]*\bsrc\s*=\s*['\"]?\s*(https?:)?//[^>]*>\s*</script\s*>", re.I | re.S)
_LINK_HREF = re.compile(r"<link\b[^>]*\bhref\s*=\s*['\"]?\s*(https?:)?//[^>]*>", re.I | re.S)
_SRC_ATTR = re.compile(r"(\s(?:src|data-src|poster|background|data|(?:xlink:)?href)\s*=\s*)(['\"])\s*(?:https?:)?//[^'\"]*\2",
                       re.I)
_SRCSET = re.compile(r"(\ssrcset\s*=\s*)(['\"])([^'\"]*)\2", re.I)
_META_REFRESH = re.compile(r"<meta\b[^>]*http-equiv\s*=\s*['\"]?\s*refresh[^>]*>", re.I | re.S)
_IMAGE_SET = re.compile(r"image-set\(([^)]*)\)", re.I)
_QUOTED_REMOTE = re.compile(r"(['\"])\s*(?:https?:)?//[^'\"]*\1", re.I)
#: attributes that load what they name, on any tag (``href`` only where it loads: not <a>)
_LOADING = ("src", "data-src", "poster", "background")
_HREF_LINKS = ("a", "area", "link")


class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.bad: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        a = dict(attrs)
        for key in _LOADING:
            v = a.get(key)
            if v and REMOTE.match(v):
                self.bad.append(f"<{tag} {key}={v[:80]}>")
        v = a.get("href")
        if tag == "link" and v and REMOTE.match(v):
            self.bad.append(f"<link href={v[:80]}>")
        for key in ("href", "xlink:href"):   # an SVG <image>/<use> loads it; a hyperlink does not
            v = a.get(key)
            if tag not in _HREF_LINKS and v and REMOTE.match(v):
                self.bad.append(f"<{tag} {key}={v[:80]}>")
        v = a.get("data")
        if tag in ("object", "embed") and v and REMOTE.match(v):
            self.bad.append(f"<{tag} data={v[:80]}>")
        v = a.get("srcset")
        if v and any(REMOTE.match(c) for c in v.split(",")):
            self.bad.append(f"<{tag} srcset={v[:80]}>")
        if tag == "meta" and (a.get("http-equiv") or "").strip().lower() == "refresh":
            self.bad.append(f"<meta http-equiv=refresh content={(a.get('content') or '')[:80]}>")


def remote_references(text: str) -> list[str]:
    """Everything in an HTML page that would load from the network with http(s) or ``//``:
    ``src``/``data-src``/``srcset``/``poster``/``background`` of any tag, ``<link href>``,
    an SVG ``<image>``/``<use>`` ``href``, ``<object data>``, a meta refresh, CSS
    ``@import`` / ``url()`` / ``image-set()``; hyperlinks (``<a href>``) do not load.

    >>> remote_references("<img src='https://x.org/a.png'><a href='https://x.org'>x</a>")
    ['<img src=https://x.org/a.png>']
    """
    s = _Scan()
    s.feed(text)
    s.close()
    css = [f"css {m.group(0)[:60]}" for m in CSS_REMOTE.finditer(text)]
    css += [f"css image-set({m.group(1)[:60]})" for m in _IMAGE_SET.finditer(text) if _QUOTED_REMOTE.search(m.group(1))]
    return s.bad + css


def make_offline(text: str) -> str:
    """Drop remote ``<script src>`` and ``<link href>`` tags and meta refreshes, blank
    remote loading attributes (``src``, ``data-src``, ``srcset``, ``poster``, ``data``,
    ``background``, an SVG image's ``href``) and neutralize remote CSS ``@import``,
    ``url()`` and ``image-set()``; hyperlinks stay.

    >>> make_offline("<script src='https://cdn.x/a.js'></script><img src='//x.org/a.png'><a href='https://x.org'>x</a>")
    "<img src=''><a href='https://x.org'>x</a>"
    """
    text = _SCRIPT_SRC.sub("", text)
    text = _LINK_HREF.sub("", text)
    text = _META_REFRESH.sub("", text)

    def blank(m: re.Match) -> str:
        # a hyperlink's href stays: following it is the reader's choice, not a load
        tag = text[text.rfind("<", 0, m.start()) + 1:m.start()].split(None, 1)[0].lower() if m.start() else ""
        if m.group(1).strip().lower().startswith("href") and tag in _HREF_LINKS:
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}{m.group(2)}"

    text = _SRC_ATTR.sub(blank, text)
    text = _SRCSET.sub(lambda m: m.group(0) if not any(REMOTE.match(c) for c in m.group(3).split(","))
                       else f"{m.group(1)}{m.group(2)}{m.group(2)}", text)
    text = _IMAGE_SET.sub(lambda m: "image-set(" + _QUOTED_REMOTE.sub(r"\1about:blank#\1", m.group(1)) + ")", text)
    return CSS_REMOTE.sub(lambda m: m.group(1) + "about:blank#", text)


def exporter(theme: str = "light") -> Any:
    """An HTMLExporter: lab template, our offline blocks, inputs and prompts hidden,
    figures embedded, in the ``theme`` (``"light"`` or ``"dark"``)."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="lab",
        template_file=TEMPLATE_NAME,
        extra_loaders=[DictLoader({TEMPLATE_NAME: OFFLINE_TEMPLATE})],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
        theme=theme,
    )


def notebook_to_html(notebook: str | Path, html_path: str | Path, title: Optional[str] = None) -> Path:
    """Export an executed notebook to ``html_path`` as an offline page (code cells hidden,
    titled ``title``); returns the path. Raises when the page would still load anything
    from the network (:func:`remote_references`)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    nb.metadata.pop("widgets", None)  # widget state is not needed offline
    errors = 0
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", ())
        # papermill draws the ids of the cells it adds at random (the parameters it injects,
        # the error banners of a failed run), and the page carries them: the same inputs
        # must give the same bytes (the manifest hashes every page)
        if "injected-parameters" in tags:
            cell["id"] = "injected-parameters"
        elif "papermill-error-cell-tag" in tags:
            errors += 1
            cell["id"] = f"papermill-error-{errors}"
    if title:
        nb.metadata["title"] = title
    body, _ = exporter().from_notebook_node(nb, resources={"metadata": {"name": title or Path(notebook).stem}})
    body = make_offline(body)
    left = remote_references(body)
    if left:  # pragma: no cover - make_offline removes every pattern remote_references finds
        raise RuntimeError(f"{notebook}: the HTML export still references the network: {left[0]}")
    return write_text(Path(html_path), body)   # a full disk names the file
