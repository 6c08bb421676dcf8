"""Where things live: the repository, the registry, run artifacts and the cache.

``REFUSAL_ROOT`` overrides the repository root, ``REFUSAL_RUNS`` the runs folder
and ``REFUSAL_CACHE`` the cache of converted weights and built organisms
(default ``~/.cache/refusal-representations``).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(os.environ.get("REFUSAL_ROOT", Path(__file__).resolve().parents[2]))
PARAMS_DIR = REPO_ROOT / "params"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
SITE_DIR = REPO_ROOT / "site"


def runs_dir() -> Path:
    """Root of the per-model artifact folders (``runs/<model>/``)."""
    return Path(os.environ.get("REFUSAL_RUNS", REPO_ROOT / "runs"))


def run_dir(model: str) -> Path:
    """``runs/<model>/``, created if missing."""
    d = runs_dir() / model
    d.mkdir(parents=True, exist_ok=True)
    return d


def cache_dir() -> Path:
    """Cache of assembled GGUF files, converted weights and organisms, created if missing."""
    d = Path(os.environ.get("REFUSAL_CACHE", Path.home() / ".cache" / "refusal-representations"))
    d.mkdir(parents=True, exist_ok=True)
    return d
