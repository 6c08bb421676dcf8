"""Build the writeup: Quarto when it is installed, else an offline HTML preview with nbconvert.

Quarto cannot be installed on our CPU machines; the published site is rendered
by Quarto in GitHub Actions (``.github/workflows/site.yml``). Offline,
:func:`build` converts the executed notebooks under ``site/models/`` and the
site's pages to HTML under ``_site/`` and says so.
"""

from __future__ import annotations

import html
import logging
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from refusal.paths import REPO_ROOT, SITE_DIR

log = logging.getLogger("refusal.report.site")
OUT = REPO_ROOT / "_site"


def _preview_notebook(nb: Path, out: Path) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(nb, as_version=4))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body)


_CALLOUT = re.compile(r"^:::\s*\{\.callout-(\w+)\}\s*\n(.*?)\n:::\s*$", re.DOTALL | re.MULTILINE)


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


def preview_markdown_html(text: str, title: str) -> str:
    """A Quarto page's markdown as standalone HTML: front-matter title and subtitle, callouts as boxes."""
    import mistune

    meta, body = _front_matter(text)
    parts, last = [], 0
    for m in _CALLOUT.finditer(body):
        parts.append(mistune.html(body[last : m.start()]))
        parts.append(f"<div class='callout callout-{m.group(1)}'>{mistune.html(m.group(2))}</div>")
        last = m.end()
    parts.append(mistune.html(body[last:]))
    # Quarto links the rendered page of a local .ipynb / .qmd source; so does the preview
    parts = [re.sub(r'href="(?![a-z]+://)([^"#]+)\.(?:ipynb|qmd)', r'href="\1.html', x) for x in parts]
    head = f"<h1>{html.escape(meta.get('title', title))}</h1>"
    if meta.get("subtitle"):
        head += f"<p class='subtitle'>{html.escape(meta['subtitle'])}</p>"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(meta.get('title', title))}</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.5}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
            ".subtitle{color:#555;font-size:1.2em;margin-top:-.5em}"
            ".callout{border-left:4px solid #0d6efd;background:#f3f7ff;padding:.2em 1em;margin:1em 0}</style>"
            f"</head><body>{head}{''.join(parts)}</body></html>")


def _preview_markdown(md: Path, out: Path, title: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(preview_markdown_html(md.read_text(), title))


def _num(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int,)) or (isinstance(x, float) and x.is_integer() and digits == 0):
        return str(int(x))
    return f"{x:.{digits}f}"


def _rate(row: dict, key: str) -> str:
    if row.get(key) is None or (isinstance(row.get(key), float) and math.isnan(row[key])):
        return "–"
    return f"{row[key]:.2f} [{row[key + '_low']:.2f}, {row[key + '_high']:.2f}]"


def findings_markdown(df: Any) -> tuple[str, str]:
    """(markdown table, notes) of the findings; every cell comes from ``df`` (see refusal.report.findings)."""
    if df.empty:
        return "*No model has results yet: run `make report`.*", ""
    head = ("| model | baseline refusal [95% CI] | selected layer / position | held-out Cohen's d | "
            "refusal after ablation [95% CI] | compliance / coherence | random-direction refusal | "
            "effective rank | verdict | benchmark Δacc | harmless first-token KL |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for row in df.to_dict("records"):
        lines.append(" | ".join([
            f"| `{row['model']}`", _rate(row, "baseline_refusal"),
            f"{_num(row.get('layer'), 0)} / {_num(row.get('position'), 0)}", _num(row.get("d_test")),
            _rate(row, "ablated_refusal"), f"{_num(row.get('ablated_compliance'))} / {_num(row.get('ablated_coherence'))}",
            _num(row.get("random_refusal")), _num(row.get("effective_rank"), 0), str(row.get("verdict") or "–"),
            _num(row.get("benchmark_delta"), 3), _num(row.get("harmless_first_token_kl"), 3)]) + " |")
    judges = sorted({str(j) for j in df.get("judge", []) if isinstance(j, str)})
    n = sorted({int(x) for x in df.get("n_eval", []) if x == x})
    notes = (f"Rates are shares of n = {', '.join(map(str, n))} held-out harmful prompts per condition, with Wilson "
             f"95% intervals; scored by the {', '.join(judges) or '–'} judge. The verdict rule (centralized / "
             "distributed / resistant) and its thresholds are stated in each model's 04_ablate notebook.")
    no_ortho = _without_orthogonalization(list(df["model"]))
    if no_ortho:
        notes += (" No benchmark columns for " + ", ".join(f"`{m}`" for m in no_ortho) + ": its architecture normalizes "
                  "block outputs before the residual add (sandwich norms), so weight orthogonalization cannot equal "
                  "runtime ablation and stages 05-06 do not run for it.")
    return "\n".join(lines), notes


def _without_orthogonalization(models: list[str]) -> list[str]:
    """The registry models among ``models`` for which the report runner skips stages 05-06."""
    from refusal.config import ORTHO_STAGES, list_models, load_config, skip_reason

    known = set(list_models())
    return [m for m in models if m in known and skip_reason(load_config(m), ORTHO_STAGES[0]) is not None]


def write_index(root: Path | None = None) -> Path:
    """Generate ``site/index.qmd`` from the template and the artifacts in ``runs/``."""
    from string import Template

    from refusal.artifacts import _git_commit
    from refusal.data import default_pairs
    from refusal.report.findings import findings_table

    table, notes = findings_markdown(findings_table(root=root))
    tmpl = Template((SITE_DIR / "templates" / "index.qmd.tmpl").read_text())
    page = tmpl.substitute(findings_table=table, findings_notes=notes, n_pairs=len(default_pairs()),
                           commit=(_git_commit() or "unknown")[:12])
    out = SITE_DIR / "index.qmd"
    out.write_text(page)
    return out


def build() -> Path:
    """Write the index page from the artifacts, then render the site into ``_site/``; returns the index page."""
    write_index()
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
