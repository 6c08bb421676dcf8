"""Build the writeup: Quarto when it is installed, else an offline HTML preview with nbconvert.

Quarto cannot be installed on our CPU machines; the published site is rendered
by Quarto in GitHub Actions (``.github/workflows/site.yml``). Offline,
:func:`build` converts the executed notebooks under ``site/models/`` and the
site's pages to HTML under ``_site/`` and says so.
"""

from __future__ import annotations

import html
import logging
import shutil
import subprocess
from pathlib import Path

from refusal.paths import REPO_ROOT, SITE_DIR

log = logging.getLogger("refusal.site")
OUT = REPO_ROOT / "_site"


def _preview_notebook(nb: Path, out: Path) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(nb, as_version=4))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body)


def _preview_markdown(md: Path, out: Path, title: str) -> None:
    import mistune

    text = md.read_text()
    if text.startswith("---"):
        text = text.split("---", 2)[2]  # drop the YAML front matter
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                   "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.5}"
                   "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}</style>"
                   f"</head><body>{mistune.html(text)}</body></html>")


def build() -> Path:
    """Render the site into ``_site/``; returns the index page."""
    if shutil.which("quarto"):
        subprocess.run(["quarto", "render"], cwd=REPO_ROOT, check=True)
        return OUT / "index.html"
    log.info("quarto is not installed: building an offline HTML preview with nbconvert into %s", OUT)
    OUT.mkdir(exist_ok=True)
    for page in sorted(SITE_DIR.glob("*.qmd")) + sorted(SITE_DIR.glob("*.md")):
        _preview_markdown(page, OUT / f"{page.stem}.html", page.stem)
    for nb in sorted((SITE_DIR / "models").rglob("*.ipynb")):
        _preview_notebook(nb, OUT / nb.relative_to(SITE_DIR).with_suffix(".html"))
    index = OUT / "index.html"
    log.info("preview: %s", index)
    return index


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build()
