"""Where things live: the repository, the registry, run artifacts and the cache.

``REFUSAL_ROOT`` overrides the repository root, ``REFUSAL_RUNS`` the runs folder
and ``REFUSAL_CACHE`` the cache of converted weights and built organisms
(default ``~/.cache/refusal-representations``).
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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


@contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """Exclusive inter-process lock ``cache_dir()/locks/<name>.lock`` around building a cache entry.

    ``make report`` runs model chains in parallel processes (and a test run may share the cache):
    two of them needing the same converted model, organism or distilled answers wait for each other
    instead of racing. POSIX ``flock``: released when the holder exits, even on a crash.
    """
    import fcntl

    d = cache_dir() / "locks"
    d.mkdir(exist_ok=True)
    with open(d / f"{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
