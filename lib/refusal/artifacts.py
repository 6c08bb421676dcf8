"""Artifacts: atomic writes (temp file + rename) with provenance.

Every stage writes into ``runs/<model>/`` through these helpers, so a crash
never leaves a half-written file that the next stage would read, and every
artifact can say where it came from (model, revision, data hash, parameters,
library versions, seed, git commit).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import platform
import secrets
import subprocess
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

log = logging.getLogger(__name__)

_TMP = ".tmp"
_LIBS = ("torch", "transformers", "transformer-lens", "numpy", "refusal-representations")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success, make it durable and rename it over ``path``.

    The temporary file is hidden (``.<name>.<pid>.<random>.tmp``) and created with the process's normal mode
    (``0666`` less the umask: ``0644`` under umask 022), so the artifact gets that mode too. On success its data
    are fsynced before the rename, and the folder after it, so a crash never leaves a renamed but empty file. On
    an exception the temporary file is removed and ``path`` is untouched. A process killed mid-write (SIGKILL)
    leaves at worst its hidden temporary file: the next write of the same target removes it (and any other
    left by a process that no longer runs).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    tmp = _new_temp(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _new_temp(path: Path) -> Path:
    """Create an empty hidden temporary file for ``path`` (mode 0666 less the umask) and return its path."""
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{_TMP}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _remove_stale_temps(path: Path) -> None:
    """Remove temporary files of ``path`` left by writers that no longer run (killed mid-write).

    Names ``.<name>.<pid>.<random>.tmp`` whose process is gone, and the older form ``.<name>.<random>.tmp``
    (no process id). Temporary files of this process and of live processes are left alone.
    """
    prefix = f".{path.name}."
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*{_TMP}"):
        middle = tmp.name[len(prefix) : -len(_TMP)].split(".")
        if len(middle) == 2 and middle[0].isdigit():
            pid = int(middle[0])
            if pid == os.getpid() or _alive(pid):
                continue
        try:
            tmp.unlink()
            log.info("removed %s, left by a write of %s that did not finish", tmp.name, path)
        except FileNotFoundError:
            pass


def _alive(pid: int) -> bool:
    """Whether a process with this id runs (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file or a folder) to disk; folders that cannot be opened for it are skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (IsADirectoryError, PermissionError):
        return
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


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
