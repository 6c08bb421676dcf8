"""Where things live: the repository, the registry, run artifacts and the cache.

``REFUSAL_ROOT`` overrides the repository root, ``REFUSAL_RUNS`` the runs folder
and ``REFUSAL_CACHE`` the cache of converted weights and built organisms
(default ``~/.cache/refusal-representations``).

Each cache entry is written under a temporary name and renamed into place, so a reader never sees half of one;
the workflow (``workflow/Snakefile``) builds each entry in one job of its own, ahead of the jobs that read it.
"""

from __future__ import annotations

import hashlib
import os
import re
from importlib import metadata
from pathlib import Path

CONVERT_VERSION = "1"  # bump to invalidate converted-weight caches

REPO_ROOT = Path(os.environ.get("REFUSAL_ROOT", Path(__file__).resolve().parents[2]))
PARAMS_DIR = REPO_ROOT / "params"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
SITE_DIR = REPO_ROOT / "site"


def runs_dir() -> Path:
    """Root of the per-model artifact folders (``runs/<model>/``)."""
    return Path(os.environ.get("REFUSAL_RUNS", REPO_ROOT / "runs"))


# One path component: letters, digits, "_", ".", "-"; not starting with "." (no "..", no hidden folder).
_RUN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def run_dir(model: str) -> Path:
    """``runs/<model>/``, created if missing.

    Raises:
        ValueError: ``model`` is not one plain folder name (a path such as ``../x`` or ``a/b``, a hidden name),
            so nothing is ever created outside ``runs/``.
    """
    if not isinstance(model, str) or not _RUN_NAME.match(model):
        raise ValueError(f"run name {model!r} is not a plain folder name (letters, digits, _ . -, not starting "
                         f"with '.'): refusing to create a folder for it under {runs_dir()}")
    d = runs_dir() / model
    d.mkdir(parents=True, exist_ok=True)
    return d


def cache_dir() -> Path:
    """Cache of assembled GGUF files, converted weights and organisms, created if missing."""
    d = Path(os.environ.get("REFUSAL_CACHE", Path.home() / ".cache" / "refusal-representations"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def converted_dir(name: str, sha256: str, dtype: str) -> Path:
    """``cache_dir()/hf/<name>-<key>/``: the safetensors checkpoint that registry entry ``name`` (its GGUF's
    ``sha256``, its ``dtype``) is converted into (may not exist yet).

    The key hashes the GGUF's SHA-256, the entry's dtype, the transformers release and :data:`CONVERT_VERSION`, so a
    new release or dtype gets its own entry. Computed without importing transformers (the workflow asks at DAG time).
    """
    key = f"{sha256}|{dtype}|{metadata.version('transformers')}|{CONVERT_VERSION}"
    return cache_dir() / "hf" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
