"""Figures people can reuse: every notebook figure is also saved as PNG and SVG next to its stage's artifacts."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from refusal.artifacts import atomic_path

__all__ = ["save_figure", "FIGURE_FORMATS"]

log = logging.getLogger(__name__)

FIGURE_FORMATS = ("png", "svg")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _figure(obj: Any) -> Any:
    """The matplotlib Figure of ``obj``: a Figure, an Axes, or a seaborn grid (``.figure``)."""
    from matplotlib.figure import Figure

    if isinstance(obj, Figure):
        return obj
    fig = getattr(obj, "figure", None) or getattr(obj, "fig", None)
    if isinstance(fig, Figure):
        return fig
    raise TypeError(f"save_figure: expected a matplotlib Figure, Axes or seaborn grid, got {type(obj).__name__}")


def save_figure(fig: Any, out_dir: str | Path, name: str, dpi: int = 150) -> dict[str, Path]:
    """Write ``out_dir/figures/<name>.png`` and ``.svg`` atomically; returns ``{format: path}``.

    ``fig`` is a matplotlib Figure, an Axes or a seaborn grid; ``out_dir`` is the stage's artifact folder
    (``runs/<model>/<stage>/``). The figure is saved as drawn (``bbox_inches="tight"``) and stays open, so the
    notebook still shows it inline.
    """
    if not _NAME.match(name):
        raise ValueError(f"save_figure: figure name {name!r} must be a plain file stem (letters, digits, _ . -)")
    import matplotlib

    figure = _figure(fig)
    folder = Path(out_dir) / "figures"
    paths = {}
    # same figure, same bytes: no date in the SVG, element ids hashed with a fixed salt (default: random)
    with matplotlib.rc_context({"svg.hashsalt": "refusal-representations"}):
        for fmt in FIGURE_FORMATS:
            path = folder / f"{name}.{fmt}"
            with atomic_path(path) as tmp:
                figure.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight",
                               metadata={"Date": None} if fmt == "svg" else None)
            paths[fmt] = path
    log.info("figure %s saved as %s", name, ", ".join(str(p) for p in paths.values()))
    return paths
