"""When a stage of the report workflow re-runs: the values its Snakemake ``params`` hold, and its data inputs.

A stage re-runs when its notebook, the model's weights, the upstream manifest or a data file it names change (its
inputs, compared by checksum) or when one of :func:`stage_params` changes: the registry entry without its resource
hints, the stage's ``stage_params``, the hash of the library modules the notebook imports (:func:`module_closure`:
a change elsewhere in the library re-runs nothing), the hash of the embedded data, and the judge's settings for a
stage that may judge with an LLM.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from refusal.config import ModelConfig
from refusal.device import cpu_dtype
from refusal.paths import REPO_ROOT
from refusal.report.outputs import notebook_path, rel

__all__ = ["module_closure", "source_hash", "code_hash", "data_hash", "judge_settings", "stage_params",
           "data_inputs", "site_code_hash", "parameter_defaults", "grades_with_llm"]

_JUDGE_ENV = ("OPENAI_BASE_URL", "REFUSAL_JUDGE_MODEL")


def _notebook_source(path: Path) -> str:
    """The code cells of a notebook, IPython magics and shell lines left out."""
    nb = json.loads(path.read_text())
    lines = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            src = cell.get("source", "")
            src = "".join(src) if isinstance(src, list) else src
            lines += [ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


def _imports(source: str, module: str = "", is_package: bool = False) -> set[str]:
    """Names of the ``refusal`` modules ``source`` imports (anywhere: functions too), relative imports resolved."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                parts = parts if is_package else parts[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
    return {m for m in found if m == "refusal" or m.startswith("refusal.")}


def _package_root() -> Path:
    import refusal

    return Path(refusal.__file__).parent


@lru_cache(maxsize=None)
def _module_file(name: str) -> Path | None:
    root = _package_root().parent
    p = root.joinpath(*name.split("."))
    if (p / "__init__.py").is_file():
        return p / "__init__.py"
    return p.with_suffix(".py") if p.with_suffix(".py").is_file() else None


def module_closure(source: str) -> list[Path]:
    """The library files a piece of code runs: every ``refusal`` module it imports, their packages' ``__init__``,
    and what those import, transitively. A package that loads its modules lazily (a module ``__getattr__``) counts
    with every module in it."""
    todo = list(_imports(source))
    seen: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__
            mod = ".".join(parts[:i])
            if mod in seen:
                continue
            f = _module_file(mod)
            if f is None:
                continue  # a name imported from a module, not a module
            seen[mod] = f
            text = f.read_text()
            todo += _imports(text, mod, f.name == "__init__.py")
            if f.name == "__init__.py" and re.search(r"^def __getattr__", text, re.M):
                todo += [f"{mod}.{p.stem}" for p in f.parent.glob("*.py") if p.name != "__init__.py"]
    return sorted(set(seen.values()))


def _hash_files(files: Iterable[Path], root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def source_hash(source: str) -> str:
    """Hash of the library modules a piece of code runs (:func:`module_closure`)."""
    return _hash_files(module_closure(source), _package_root().parent)


@lru_cache(maxsize=None)
def code_hash(notebook: str | Path) -> str:
    """Hash of the library modules the notebook runs (:func:`module_closure`): a change to any of them re-runs the
    stage, a change elsewhere in the library does not."""
    path = Path(notebook) if Path(notebook).is_absolute() else REPO_ROOT / notebook
    return source_hash(_notebook_source(path))


@lru_cache(maxsize=None)
def data_hash() -> str:
    """Hash of the embedded data (``refusal/default_data/``), which every stage may read."""
    root = _package_root()
    return _hash_files((p for p in (root / "default_data").rglob("*") if p.is_file()), root)


def parameter_defaults(notebook: Path) -> dict[str, Any]:
    """The defaults of a notebook's papermill parameters cell (the cell tagged ``parameters``)."""
    nb = json.loads(notebook.read_text())
    for cell in nb.get("cells", []):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            src = cell.get("source", "")
            out = {}
            for node in ast.parse("".join(src) if isinstance(src, list) else src).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    try:
                        out[node.targets[0].id] = ast.literal_eval(node.value)
                    except ValueError:
                        pass
            return out
    return {}


def judge_settings(stage: str, overrides: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The judge's settings when ``stage`` may judge with an LLM (its parameters cell has ``judge`` and the value,
    after the registry's override, is not ``"offline"``): the endpoint, the judge model and whether a key is set
    (never the key). None for a stage that does not judge."""
    defaults = parameter_defaults(REPO_ROOT / notebook_path(stage))
    judge = (overrides or {}).get("judge", defaults.get("judge", "offline"))
    if "judge" not in defaults or judge == "offline":
        return None
    return {**{k: os.environ.get(k, "") for k in _JUDGE_ENV}, "OPENAI_API_KEY set": bool(os.environ.get("OPENAI_API_KEY"))}


def _registry_hash(cfg: ModelConfig) -> str:
    """Hash of the entry without what only one stage (``stage_params``) or the scheduler (``mem_gb``,
    ``vocab_size``) reads; ``cpu_dtype: auto`` counts as what it resolves to on this machine (runs done where it
    meant float32 re-run where it means bfloat16)."""
    d = cfg.to_dict()
    for k in ("stage_params", "mem_gb", "vocab_size", "path"):
        d.pop(k, None)
    if d.get("cpu_dtype") == "auto":
        d["cpu_dtype"] = f"auto:{cpu_dtype(cfg)}"
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_params(stage: str, cfg: ModelConfig | None = None) -> dict[str, str]:
    """The values whose change re-runs a stage (Snakemake ``params``): the registry entry, the stage's
    ``stage_params``, the library code it runs, the embedded data, the judge settings of a stage that judges."""
    overrides = cfg.stage(stage) if cfg is not None else {}
    out = {"code": code_hash(notebook_path(stage)), "data": data_hash()}
    if cfg is not None:
        out |= {"registry": _registry_hash(cfg), "stage_params": json.dumps(overrides, sort_keys=True)}
    judge = judge_settings(stage, overrides)
    if judge is not None:
        out["judge"] = json.dumps(judge, sort_keys=True)
    return out


def grades_with_llm(stage: str, cfg: ModelConfig | None = None) -> bool:
    """True when the stage may grade with an LLM judge: its ``judge`` (after the registry's override) is not
    ``"offline"``, or it serves a ``judge_entry`` itself (stage 08). Its job then starts from the shared judge cache."""
    overrides = cfg.stage(stage) if cfg is not None else {}
    return (judge_settings(stage, overrides) is not None
            or "judge_entry" in parameter_defaults(REPO_ROOT / notebook_path(stage)))


def data_inputs(stage: str, cfg: ModelConfig) -> list[str]:
    """Files named by the stage's registry overrides (``stage_params``: e.g. ``pairs_path``) that exist: inputs."""
    out = []
    for v in cfg.stage(stage).values():
        if isinstance(v, str) and v:
            p = Path(v) if Path(v).is_absolute() else REPO_ROOT / v
            if p.is_file():
                out.append(rel(p))
    return out



def site_code_hash() -> str:
    """Hash of the library modules the site build runs."""
    return source_hash("import refusal.report.site\nimport refusal.report.findings\n")

