"""Quarto's website rules, for a project we cannot render here: render targets, output paths, navigation.

Quarto cannot be installed on our machines, so the site is rendered by Quarto in
GitHub Actions and previewed offline (:mod:`refusal.report.site`). This module reads a
project's ``_quarto.yml`` the way Quarto 1.8 does, so that the preview lays the
site out exactly as ``quarto render`` will, and fails where Quarto would drop a
page (quarto-cli ``src/project/project-context.ts``, ``src/core/path.ts``):

- ``metadata-files`` are merged over ``_quarto.yml`` (a missing one is skipped,
  as Quarto does: a pre-render step may write it; Quarto >= 1.5 re-reads the
  project configuration after its pre-render scripts).
- ``project.render`` entries are paths or globs relative to the project
  directory; a glob that does not start with ``/`` matches at any depth
  (Quarto prefixes ``**/``); ``!`` entries exclude.
- Every path with a component starting with ``_`` or ``.`` is ignored, also
  when the render list names it explicitly, and so are ``README.md`` files, the
  output directory and the engines' environment folders (``venv``, ``env``,
  ``renv``, ``packrat``). Quarto drops such a target silently; :func:`layout`
  raises instead when the render list names one explicitly.
- A target ``a/b/page.ipynb`` (or ``.qmd``, ``.md``) is written to
  ``<output-dir>/a/b/page.html``: the site root's ``index.html`` comes only
  from an ``index`` page at the top of the project directory.
- ``website.navbar`` (``left``/``right``, with ``menu``) and ``website.sidebar``
  (``contents`` with ``section``) hrefs are relative to the project directory.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

__all__ = ["CONFIG", "PAGE_SUFFIXES", "NavItem", "SiteLayout", "QuartoLayoutError", "load_config", "hidden_component",
           "ignored_by_quarto", "output_path", "layout", "glob_regex"]

CONFIG = "_quarto.yml"
PAGE_SUFFIXES = (".qmd", ".ipynb", ".md")
# folders the engines never render (Jupyter: virtual environments; knitr: renv, packrat)
ENGINE_IGNORE_DIRS = ("venv", "env", "renv", "packrat")


class QuartoLayoutError(ValueError):
    """A project that ``quarto render`` would not publish as configured (names the file and the entry)."""


@dataclass(frozen=True)
class NavItem:
    """One navigation entry: a page (``href`` relative to the project directory) or a section of entries."""

    text: str
    href: str | None = None  # None for a section without its own page
    children: tuple["NavItem", ...] = ()

    def pages(self) -> list[str]:
        """Every local href in this entry and below, in order."""
        own = [self.href] if self.href and not is_external(self.href) else []
        return own + [h for c in self.children for h in c.pages()]


@dataclass
class SiteLayout:
    """Where ``quarto render`` reads and writes: the project's pages and navigation.

    ``targets`` maps each render target (POSIX path relative to the project directory) to its
    output path relative to the output directory.
    """

    project: Path
    config: dict[str, Any]
    output_dir: Path
    targets: dict[str, str]
    navbar: list[NavItem] = field(default_factory=list)
    sidebar: list[NavItem] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # glob matches that Quarto ignores

    def nav_pages(self) -> list[str]:
        """Every page the navigation links to (project-relative), without repeats, in order."""
        seen: dict[str, None] = {}
        for item in self.navbar + self.sidebar:
            for h in item.pages():
                seen.setdefault(normalize_href(h), None)
        return list(seen)

    def output_of(self, href: str) -> str:
        """The output path (relative to the output directory) of a navigation href."""
        return self.targets[normalize_href(href)]


def is_external(href: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", href)) or href.startswith("//")


def normalize_href(href: str) -> str:
    """A navigation href as a project-relative POSIX path (leading ``/`` and ``./`` removed)."""
    return str(PurePosixPath(href.split("#")[0].lstrip("/"))).removeprefix("./")


def hidden_component(rel: str) -> str | None:
    """The first component of ``rel`` that starts with ``_`` or ``.`` (Quarto ignores such paths), else None."""
    for part in PurePosixPath(rel).parts:
        if part.startswith(("_", ".")) and part not in (".", ".."):
            return part
    return None


def ignored_by_quarto(rel: str, output_dir: str) -> str | None:
    """Why Quarto never renders project-relative path ``rel``, or None when it may."""
    parts = PurePosixPath(rel).parts
    if hidden := hidden_component(rel):
        return f"its component {hidden!r} starts with {hidden[0]!r} (Quarto ignores such paths)"
    if parts and parts[0] == PurePosixPath(output_dir).parts[0]:
        return f"it is inside the output directory {output_dir!r}"
    if re.fullmatch(r"README\.[Rrq]?md", parts[-1]):
        return "Quarto ignores README files"
    if any(p in ENGINE_IGNORE_DIRS for p in parts[:-1]):
        return "it is inside an environment folder that Quarto's engines ignore"
    return None


def glob_regex(glob: str) -> re.Pattern[str]:
    """A Quarto render-list glob as a regex over project-relative POSIX paths.

    ``*`` and ``?`` stay within a component, ``**/`` spans any number of folders, ``[...]`` is a class,
    ``{a,b}`` alternatives. A glob not starting with ``/`` matches at any depth (Quarto prefixes ``**/``).
    """
    anchored = glob.startswith("/")
    g = glob.lstrip("/")
    g = re.sub(r"^\./", "", g)
    out, i = [], 0
    while i < len(g):
        c = g[i]
        if g.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif g.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = g.index("]", i + 1)
            out.append("[" + g[i + 1 : j].replace("!", "^", 1) + "]")
            i = j + 1
        elif c == "{":
            j = g.index("}", i + 1)
            out.append("(?:" + "|".join(re.escape(x) for x in g[i + 1 : j].split(",")) + ")")
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile(("" if anchored else "(?:[^/]+/)*") + "".join(out) + r"\Z")


def is_glob(entry: str) -> bool:
    return any(ch in entry for ch in "*?[{")


def _merge(base: Any, over: Any) -> Any:
    """Quarto's config merge: mappings merged recursively, lists concatenated without repeats."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) or isinstance(over, list):
        merged, seen = [], set()
        for x in (base if isinstance(base, list) else [base]) + (over if isinstance(over, list) else [over]):
            key = json.dumps(x, sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                merged.append(x)
        return merged
    return copy.deepcopy(over)


def load_config(project: Path) -> dict[str, Any]:
    """``_quarto.yml`` with its ``metadata-files`` merged in (missing ones skipped, as Quarto does)."""
    path = Path(project) / CONFIG
    if not path.exists():
        raise FileNotFoundError(f"{path}: no Quarto project configuration")
    cfg = yaml.safe_load(path.read_text()) or {}
    if not isinstance(cfg, dict):
        raise QuartoLayoutError(f"{path}: expected a mapping at the top level")
    files = ([cfg["metadata-file"]] if cfg.get("metadata-file") else []) + list(cfg.get("metadata-files") or [])
    for name in files:
        extra = Path(project) / name
        if extra.exists():
            data = yaml.safe_load(extra.read_text()) or {}
            if not isinstance(data, dict):
                raise QuartoLayoutError(f"{extra}: expected a mapping at the top level")
            cfg = _merge(cfg, data)
    cfg.pop("metadata-file", None)
    cfg.pop("metadata-files", None)
    cfg.setdefault("project", {})
    return cfg


def output_path(rel: str) -> str:
    """Where Quarto writes the HTML of render target ``rel`` (both relative: project, output directory)."""
    p = PurePosixPath(rel)
    if p.suffix not in PAGE_SUFFIXES:
        raise QuartoLayoutError(f"{rel}: not a page Quarto renders to HTML (expected one of {PAGE_SUFFIXES})")
    return str(p.with_suffix(".html"))


def _walk(project: Path, output_dir: str) -> list[str]:
    """Every file under ``project`` (POSIX, relative), skipping folders starting with ``.`` (.git, .venv: never
    rendered, and large), the output directory and symlinks; folders starting with ``_`` are walked, so that a
    render glob matching into one can be reported."""
    files = []
    for root, dirs, names in os.walk(project, followlinks=False):
        rel_root = Path(root).relative_to(project)
        dirs[:] = sorted(d for d in dirs if not (Path(root) / d).is_symlink() and not d.startswith(".")
                         and not (rel_root == Path(".") and d == output_dir))
        files += [(rel_root / n).as_posix() for n in sorted(names)]
    return files


def _targets(project: Path, cfg: dict[str, Any], output_dir: str) -> tuple[list[str], list[str]]:
    """(render targets, glob matches Quarto ignores), both project-relative."""
    render = cfg["project"].get("render")
    where = f"{project / CONFIG}: project.render"
    if render is None:
        raise QuartoLayoutError(f"{where} is not set: list the pages to render (the default, every file, "
                                "would render the repository's notebooks sources too)")
    if isinstance(render, str):
        render = [render]
    files = _walk(project, output_dir)
    include: dict[str, None] = {}
    ignored: dict[str, None] = {}
    excludes = [glob_regex(e[1:]) for e in render if isinstance(e, str) and e.startswith("!")]
    for entry in render:
        if not isinstance(entry, str) or not entry:
            raise QuartoLayoutError(f"{where}: entry {entry!r} is not a path or glob")
        if entry.startswith("!"):
            continue
        if is_glob(entry):
            rx = glob_regex(entry)
            matched = [f for f in files if rx.match(f)]
        else:
            rel = normalize_href(entry)
            why = ignored_by_quarto(rel, output_dir)
            if why:
                raise QuartoLayoutError(f"{where}: {entry!r} is never rendered: {why}")
            full = project / rel
            if full.is_dir():
                matched = [f for f in files if f.startswith(rel.rstrip("/") + "/")]
            elif full.exists():
                matched = [rel]
            else:
                raise QuartoLayoutError(f"{where}: {entry!r} does not exist under {project}")
        for f in matched:
            if any(x.match(f) for x in excludes) or PurePosixPath(f).suffix not in PAGE_SUFFIXES:
                continue
            (ignored if ignored_by_quarto(f, output_dir) else include).setdefault(f, None)
    return list(include), list(ignored)


def _nav_items(entries: Any, where: str) -> list[NavItem]:
    items = []
    for i, e in enumerate(entries or []):
        here = f"{where}[{i}]"
        if isinstance(e, str):
            items.append(NavItem(text=PurePosixPath(e).stem, href=e))
        elif isinstance(e, dict) and "auto" in e:
            raise QuartoLayoutError(f"{here}: 'auto' entries are not expanded by the offline preview; list the pages "
                                    "(the site's pre-render step generates them)")
        elif isinstance(e, dict) and ("section" in e or "contents" in e or "menu" in e):
            kids = _nav_items(e.get("contents", e.get("menu")), here + ".contents")
            items.append(NavItem(text=str(e.get("section") or e.get("text") or ""), href=e.get("href"),
                                 children=tuple(kids)))
        elif isinstance(e, dict) and "href" in e:
            items.append(NavItem(text=str(e.get("text") or PurePosixPath(e["href"]).stem), href=str(e["href"])))
        elif isinstance(e, dict) and "text" in e:
            items.append(NavItem(text=str(e["text"])))  # a label or separator
        else:
            raise QuartoLayoutError(f"{here}: unrecognized navigation entry {e!r}")
    return items


def _navigation(cfg: dict[str, Any], where: str) -> tuple[list[NavItem], list[NavItem]]:
    site = cfg.get("website") or {}
    navbar = site.get("navbar") or {}
    bar = _nav_items(navbar.get("left"), f"{where}: website.navbar.left") + _nav_items(
        navbar.get("right"), f"{where}: website.navbar.right")
    sidebars = site.get("sidebar") or []
    if isinstance(sidebars, dict):
        sidebars = [sidebars]
    side = []
    for j, sb in enumerate(sidebars):
        side += _nav_items(sb.get("contents"), f"{where}: website.sidebar[{j}].contents")
    return bar, side


def layout(project: Path) -> SiteLayout:
    """The project's render targets, their output paths and its navigation, by Quarto's rules.

    Raises :class:`QuartoLayoutError` where ``quarto render`` would silently drop or mis-place a page:
    an explicit render entry Quarto ignores, a navigation entry that is not a render target.
    """
    project = Path(project).resolve()
    cfg = load_config(project)
    where = str(project / CONFIG)
    if (cfg["project"].get("type") or "default") != "website":
        raise QuartoLayoutError(f"{where}: project.type must be 'website' for a site with navigation")
    output_dir = str(cfg["project"].get("output-dir") or "_site")
    targets, ignored = _targets(project, cfg, output_dir)
    navbar, sidebar = _navigation(cfg, where)
    lay = SiteLayout(project=project, config=cfg, output_dir=project / output_dir,
                     targets={t: output_path(t) for t in targets}, navbar=navbar, sidebar=sidebar, ignored=ignored)
    for href in lay.nav_pages():
        if href not in lay.targets:
            why = ignored_by_quarto(href, output_dir)
            raise QuartoLayoutError(f"{where}: navigation links {href!r}, which is not a render target"
                                    + (f" ({why})" if why else ""))
    return lay
