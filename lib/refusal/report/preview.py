"""The offline preview of the site: what ``quarto render`` would write, built with nbconvert and mistune.

Quarto cannot be installed on our CPU machines, so :func:`preview` stands in for it: the same output paths, the
same ignore rule for ``_``/``.`` path components and the same navigation, all read from ``_quarto.yml`` by
:mod:`refusal.report.quarto`, so the preview fails where Quarto would. Pages are plain HTML with the navbar and
the sidebar; links to ``.qmd``/``.ipynb`` sources are rewritten to their rendered pages, as Quarto does.
"""

from __future__ import annotations

import html
import logging
import re
import shutil
from pathlib import Path, PurePosixPath
import os
from urllib.parse import unquote

from refusal.paths import REPO_ROOT
from refusal.report import quarto

log = logging.getLogger("refusal.report.preview")


class PreviewError(RuntimeError):
    """The preview cannot be built (e.g. it would clear a folder that is not a site)."""


def notebook_title(nb: Path) -> str:
    """The first level-1 heading of a notebook's markdown cells (``# 01 · Data`` -> ``01 · Data``), else its stem."""
    import json

    try:
        cells = json.loads(nb.read_text()).get("cells", [])
    except (OSError, ValueError) as e:
        raise ValueError(f"{nb}: not a readable notebook ({e})") from None
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            src = "".join(cell.get("source", ""))
            m = re.search(r"^#\s+(.+?)\s*$", src, re.MULTILINE)
            if m:
                return m.group(1)
    return nb.stem





_CALLOUT = re.compile(r"^:::\s*\{\.callout-(\w+)\}\s*\n(.*?)\n:::\s*$", re.DOTALL | re.MULTILINE)
_HREF = re.compile(r'(href|src)=(["\'])(.*?)\2')
_CSS = ("body{font-family:sans-serif;margin:0 !important;padding:44px 0 0 0 !important;line-height:1.5}"
        ".site-top{position:fixed;top:0;left:0;right:0;height:44px;box-sizing:border-box;z-index:10;"
        "background:#1f3a5f;color:#fff;padding:10px 16px;font:15px/24px sans-serif}"
        ".site-top a{color:#fff;margin-right:20px;text-decoration:none}.site-top .site-title{font-weight:bold}"
        ".site-side{position:fixed;top:44px;left:0;bottom:0;width:240px;box-sizing:border-box;overflow:auto;"
        "background:#f6f7f9;border-right:1px solid #ddd;padding:8px 14px;font:14px/1.5 sans-serif}"
        ".site-side ul{list-style:none;padding-left:12px;margin:2px 0}.site-side>ul{padding-left:0}"
        ".site-side .section-label{font-weight:bold;display:block;margin-top:10px}"
        ".site-side a{color:#1f5fa8;text-decoration:none}.site-side a.current{font-weight:bold;color:#b00}"
        ".site-main{display:block;margin-left:260px;padding:0 24px;max-width:1100px}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
        ".subtitle{color:#555;font-size:1.2em;margin-top:-.5em}"
        ".callout{border-left:4px solid #0d6efd;background:#f3f7ff;padding:.2em 1em;margin:1em 0}")


def _front_matter(text: str) -> tuple[dict[str, str], str]:
    """(``title`` / ``subtitle`` of a YAML front matter, the text after it)."""
    if not text.startswith("---"):
        return {}, text
    _, head, body = text.split("---", 2)
    meta = {}
    for line in head.splitlines():
        m = re.match(r"^(title|subtitle):\s*\"?(.*?)\"?\s*$", line)
        if m:
            meta[m.group(1)] = m.group(2)
    return meta, body


def _rel_url(target_out: str, page_out: str) -> str:
    """URL of output ``target_out`` from page ``page_out`` (both relative to the output directory)."""
    return os.path.relpath(target_out, start=os.path.dirname(page_out) or ".").replace(os.sep, "/")


def _rewrite_links(doc: str, page: str, lay: quarto.SiteLayout) -> str:
    """Links from render target ``page`` to other render targets point at their HTML, as Quarto rewrites them."""
    page_dir = PurePosixPath(page).parent

    def fix(m: re.Match) -> str:
        url = html.unescape(m.group(3))
        if quarto.is_external(url) or url.startswith("#") or not url:
            return m.group(0)
        path, _, frag = url.partition("#")
        target = quarto.normalize_href(path) if path.startswith("/") else os.path.normpath(page_dir / unquote(path))
        target = PurePosixPath(target).as_posix()
        if target not in lay.targets:
            return m.group(0)  # not a page (a download, an image, or a page Quarto does not render: left broken)
        new = _rel_url(lay.targets[target], lay.targets[page]) + (f"#{frag}" if frag else "")
        return f'{m.group(1)}={m.group(2)}{html.escape(new, quote=True)}{m.group(2)}'

    return _HREF.sub(fix, doc)


def _nav_html(items: list[quarto.NavItem], lay: quarto.SiteLayout, page: str) -> str:
    out = []
    for it in items:
        link = ""
        if it.href:
            url = it.href if quarto.is_external(it.href) else _rel_url(lay.output_of(it.href), lay.targets[page])
            cls = " class='current'" if it.href and quarto.normalize_href(it.href) == page else ""
            link = f"<a href='{html.escape(url, quote=True)}'{cls}>{html.escape(it.text)}</a>"
        if it.children:
            head = link.replace("<a ", "<a class='section-label' ", 1) if link else \
                f"<span class='section-label'>{html.escape(it.text)}</span>"
            out.append(f"<li class='section'>{head}<ul>{_nav_html(list(it.children), lay, page)}</ul></li>")
        else:
            out.append(f"<li>{link or html.escape(it.text)}</li>")
    return "".join(out)


def _shell(lay: quarto.SiteLayout, page: str) -> tuple[str, str]:
    """(opening, closing) HTML around a page's content: the navbar and the sidebar, as Quarto places them."""
    title = html.escape(str((lay.config.get("website") or {}).get("title") or ""))
    root = _rel_url("index.html", lay.targets[page]) if "index.html" in lay.targets.values() else "#"
    bar = "".join(f"<a href='{html.escape(_rel_url(lay.output_of(i.href), lay.targets[page]), quote=True)}'>"
                  f"{html.escape(i.text)}</a>" for i in lay.navbar if i.href and not quarto.is_external(i.href))
    top = f"<header class='site-top'><a class='site-title' href='{root}'>{title}</a>{bar}</header>"
    side = f"<nav class='site-side'><ul>{_nav_html(lay.sidebar, lay, page)}</ul></nav>" if lay.sidebar else ""
    return top + side + "<main class='site-main'>", "</main>"


def preview_markdown_html(text: str, title: str, lay: quarto.SiteLayout | None = None, page: str | None = None) -> str:
    """A Quarto page's markdown as standalone HTML: front-matter title and subtitle, callouts as boxes.

    With a layout, links to other render targets point at their HTML and the page gets the site's navigation.
    """
    import mistune

    meta, body = _front_matter(text)
    parts, last = [], 0
    for m in _CALLOUT.finditer(body):
        parts.append(mistune.html(body[last : m.start()]))
        parts.append(f"<div class='callout callout-{m.group(1)}'>{mistune.html(m.group(2))}</div>")
        last = m.end()
    parts.append(mistune.html(body[last:]))
    content = "".join(parts)
    head = f"<h1>{html.escape(meta.get('title', title))}</h1>"
    if meta.get("subtitle"):
        head += f"<p class='subtitle'>{html.escape(meta['subtitle'])}</p>"
    opening, closing = _shell(lay, page) if lay is not None and page is not None else ("", "")
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(meta.get('title', title))}</title>"
           f"<style>{_CSS}</style></head><body>{opening}{head}{content}{closing}</body></html>")
    return _rewrite_links(doc, page, lay) if lay is not None and page is not None else doc


def _preview_notebook(nb: Path, lay: quarto.SiteLayout, page: str) -> str:
    import nbformat
    from nbconvert import HTMLExporter

    doc, _ = HTMLExporter().from_notebook_node(nbformat.read(nb, as_version=4),
                                               resources={"metadata": {"name": notebook_title(nb)}})
    opening, closing = _shell(lay, page)
    doc = doc.replace("</head>", f"<style>{_CSS}</style></head>", 1)
    doc = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + opening, doc, count=1)
    doc = doc.replace("</body>", closing + "</body>", 1)
    return _rewrite_links(doc, page, lay)


def _safe_to_clear(out: Path, project: Path) -> None:
    out, project = out.resolve(), project.resolve()
    if out == project or out in project.parents or out == Path(out.anchor):
        raise PreviewError(f"refusing to clear {out}: it is the project directory or above it")


def preview(project: Path = REPO_ROOT, out: Path | None = None) -> Path:
    """Render the project's targets to HTML as ``quarto render`` lays them out; returns ``<out>/index.html``.

    The output directory (default: the project's ``output-dir``) is cleared first, as a full Quarto render does.
    Raises :class:`refusal.report.quarto.QuartoLayoutError` where Quarto would drop a page.
    """
    project = Path(project)
    lay = quarto.layout(project)
    out = Path(out) if out is not None else lay.output_dir
    _safe_to_clear(out, project)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for target, html_rel in lay.targets.items():
        src, dst = project / target, out / html_rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix == ".ipynb":
            dst.write_text(_preview_notebook(src, lay, target))
        else:
            dst.write_text(preview_markdown_html(src.read_text(), src.stem, lay, target))
    for rel in resources(project, lay):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(project / rel, out / rel)
    log.info("offline preview (nbconvert, Quarto's layout): %d pages in %s", len(lay.targets), out)
    return out / "index.html"


def resources(project: Path, lay: quarto.SiteLayout) -> list[str]:
    """``project.resources`` files (globs matched at any depth, as Quarto does), project-relative."""
    globs = lay.config["project"].get("resources") or []
    if isinstance(globs, str):
        globs = [globs]
    rxs = [quarto.glob_regex(g) for g in globs if not g.startswith("!")]
    out_name = lay.output_dir.relative_to(lay.project).as_posix()
    found = []
    for root, dirs, names in os.walk(project):
        rel_root = Path(root).relative_to(project)
        dirs[:] = [d for d in dirs if not d.startswith(".") and not (rel_root == Path(".") and d == out_name)
                   and not (Path(root) / d).is_symlink()]
        found += [r for r in ((rel_root / n).as_posix() for n in names) if any(x.match(r) for x in rxs)]
    return sorted(found)
