"""Artifacts: atomic writes (temp file + rename) with provenance.

Every stage writes into ``runs/<model>/`` through these helpers, so a crash
never leaves a half-written file that the next stage would read, and every
artifact can say where it came from (model, revision, data hash, parameters,
library versions, seed, git commit).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from refusal.paths import REPO_ROOT

__all__ = [
    "atomic_path",
    "write_json",
    "read_json",
    "write_tensors",
    "read_tensors",
    "write_csv",
    "sha256_json",
    "sha256_file",
    "provenance",
]

if TYPE_CHECKING:  # torch is imported lazily: the judge's CLI and cache do not need it
    import torch

_LIBS = ("torch", "transformers", "transformer-lens", "numpy", "refusal-representations")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set):
        return sorted(obj)
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically. NaN is refused (it is not JSON)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_jsonable, allow_nan=False) + "\n")
    return Path(path)


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a syntax error names the file, line and column."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None


def write_tensors(path: str | Path, tensors: dict[str, "torch.Tensor"], meta: dict[str, Any] | None = None) -> Path:
    """Write tensors to safetensors atomically; ``meta`` is stored as JSON in the header."""
    from safetensors.torch import save_file

    from refusal.device import host

    header = {"meta": json.dumps(meta or {}, default=_jsonable)}
    with atomic_path(path) as tmp:
        save_file({k: host(v).contiguous() for k, v in tensors.items()}, str(tmp), metadata=header)
    return Path(path)


def read_tensors(path: str | Path) -> tuple[dict[str, "torch.Tensor"], dict[str, Any]]:
    """Read a safetensors file written by :func:`write_tensors`: (tensors, meta)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing artifact (run the stage that writes it first)")
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
    return load_file(str(path)), json.loads(header.get("meta", "{}"))


def write_csv(path: str | Path, df: Any) -> Path:
    """Write a pandas DataFrame to CSV atomically (no index)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)


def sha256_json(obj: Any) -> str:
    """Stable hash of a JSON-serializable object (sorted keys)."""
    blob = json.dumps(obj, sort_keys=True, default=_jsonable, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(cfg: Any = None, **extra: Any) -> dict[str, Any]:
    """A provenance record: model, revision, library versions, git commit, plus ``extra``.

    Pass e.g. ``dataset_sha256=..., params=..., seed=...`` as keyword arguments.
    Never pass secrets: everything here is written to artifacts.
    """
    versions = {}
    for lib in _LIBS:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    rec: dict[str, Any] = {
        "libraries": versions,
        "python": platform.python_version(),
        "git_commit": _git_commit(),
    }
    if cfg is not None:
        rec["model"] = {"name": cfg.name, "model_id": cfg.model_id, "revision": cfg.revision,
                        "source": cfg.source.kind, "sha256": cfg.source.sha256}
    rec.update(extra)
    return rec
