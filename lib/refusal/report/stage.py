"""What every stage notebook does first and last: resolve its parameters, find its inputs, write its manifest.

Parameters are declared once, in the notebook's ``parameters`` cell (``notebooks/<stage>.py``), one per line::

    n_val = 16  # validation pairs used to score candidates

:func:`parameters_cell` reads that cell (names, defaults, comments); :func:`stage_setup` resolves each value:
what papermill passed (``-p n_val 32``), else the model's ``stage_params.<stage>.<name>`` in
``params/<model>.yaml``, else the cell's default. A value equal to the cell's default counts as "not passed", so
a registry override applies to it. Strings that papermill passes for non-string parameters (``-p ks "[1, 2]"``)
are read as YAML. Every stage writes its artifacts in ``runs/<model>/<stage>/`` and finishes with
:func:`write_manifest`, which records provenance and the hashes of what it wrote.
"""

from __future__ import annotations

import ast
import io
import logging
import time
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from refusal.artifacts import provenance, read_json, sha256_file, write_json
from refusal.config import CROSS_STAGES, STAGES, ModelConfig, load_config
from refusal.device import model_dtype, resolve_device
from refusal.evaluation.judge.scrub import install_log_filter
from refusal.paths import NOTEBOOKS_DIR, run_dir

__all__ = ["Param", "parameters_cell", "stage_setup", "stage_dir", "write_manifest", "read_manifest", "require_stage",
           "verify_stage", "StaleArtifactError"]

log = logging.getLogger(__name__)

_CELL = '# %% tags=["parameters"]'


class StageError(ValueError):
    """A stage notebook or its parameters are malformed; the message names the file and the parameter."""


@dataclass(frozen=True)
class Param:
    """One line of a parameters cell: ``name = default  # comment``."""

    name: str
    default: Any
    comment: str


def parameters_cell(stage: str, notebooks: Path | None = None) -> list[Param]:
    """The parameters declared in ``notebooks/<stage>.py``'s parameters cell, in order.

    Raises:
        StageError: no parameters cell, a line that is not ``name = <literal>``, or a parameter without a comment.
    """
    path = (notebooks or NOTEBOOKS_DIR) / f"{stage}.py"
    if not path.exists():
        raise StageError(f"{path}: no such stage notebook (stages: {', '.join(STAGES + CROSS_STAGES)})")
    lines = path.read_text().splitlines()
    try:
        start = lines.index(_CELL) + 1
    except ValueError:
        raise StageError(f"{path}: no parameters cell (a line `{_CELL}`)") from None
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("# %%")), len(lines))
    source = "\n".join(lines[start:end])
    comments = {tok.start[0]: tok.string.lstrip("# ").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    out = []
    for node in ast.parse(source).body:
        where = f"{path}:{start + node.lineno}"
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise StageError(f"{where}: a parameters cell holds only `name = value  # comment` lines")
        try:
            default = ast.literal_eval(node.value)
        except ValueError:
            raise StageError(f"{where}: the default of '{node.targets[0].id}' must be a literal") from None
        comment = comments.get(node.lineno, "")
        if not comment:
            raise StageError(f"{where}: parameter '{node.targets[0].id}' has no comment saying what it is")
        out.append(Param(node.targets[0].id, default, comment))
    return out


def stage_setup(stage: str, values: Mapping[str, Any]) -> tuple[ModelConfig, dict[str, Any], Path]:
    """Resolve a stage's parameters for the model named in ``values`` (the notebook's ``globals()``).

    Returns:
        (the registry entry, the resolved parameters without ``model``, ``runs/<model>/<stage>/``). The
        ``device`` parameter, where a stage has one, is resolved to a device string (:mod:`refusal.device`).

    Raises:
        StageError: a registry override names a parameter the stage does not have.
    """
    params = parameters_cell(stage)
    names = [p.name for p in params]
    if "model" not in names:
        raise StageError(f"notebooks/{stage}.py: the parameters cell has no 'model'")
    cfg = load_config(values["model"])
    overrides = cfg.stage(stage)
    unknown = sorted(set(overrides) - set(names) - {"model"})
    if unknown:
        raise StageError(f"{cfg.path}: stage_params.{stage} has unknown key '{unknown[0]}' "
                         f"(parameters of notebooks/{stage}.py: {', '.join(n for n in names if n != 'model')})")
    resolved: dict[str, Any] = {}
    for p in params:
        if p.name == "model":
            continue
        value = values.get(p.name, p.default)
        if isinstance(value, str) and p.default is not None and not isinstance(p.default, str):
            value = yaml.safe_load(value)  # papermill passes lists (and some numbers) as strings
        if value == p.default and p.name in overrides:
            value = overrides[p.name]
        resolved[p.name] = value
    if "device" in resolved:
        resolved["device"] = str(resolve_device(resolved["device"]))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=False)
    install_log_filter()  # the HTTP client's loggers stay at WARNING and never print a key or a URL's credentials
    return cfg, resolved, stage_dir(cfg.name, stage)


def stage_dir(model: str, stage: str) -> Path:
    """``runs/<model>/<stage>/``, created if missing."""
    d = run_dir(model) / stage
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_manifest(out_dir: Path, cfg: ModelConfig, params: dict[str, Any], started: float | None = None,
                   **extra: Any) -> Path:
    """Write ``manifest.json``: provenance, parameters, SHA-256 and size of every artifact in ``out_dir``.

    ``artifacts`` maps each file name to its SHA-256, ``artifact_bytes`` to its size; :func:`require_stage`
    checks both before a later stage reads the folder. Hidden files (temporary files of writes) are left out.
    """
    paths = [p for p in sorted(out_dir.iterdir())
             if p.is_file() and p.name != "manifest.json" and not p.name.startswith(".")]
    files = {p.name: sha256_file(p) for p in paths}
    sizes = {p.name: p.stat().st_size for p in paths}
    if "device" in params and cfg is not None:  # the weights' dtype the stage ran in (cpu_dtype: auto resolved)
        extra = {"weights_dtype": str(model_dtype(cfg, resolve_device(params["device"]))).removeprefix("torch."),
                 **extra}
    rec = provenance(cfg, params=params, artifacts=files, artifact_bytes=sizes, **extra)
    if started is not None:
        rec["seconds"] = round(time.time() - started, 2)
    return write_json(out_dir / "manifest.json", rec)


class StaleArtifactError(RuntimeError):
    """An artifact of a finished stage is missing, truncated or changed since the stage wrote its manifest.

    The message names the file and the stage (and notebook) to re-run.
    """


def read_manifest(model: str, stage: str) -> dict[str, Any]:
    """The manifest of a finished stage; a clear error if the stage has not run."""
    p = run_dir(model) / stage / "manifest.json"
    if not p.exists():
        raise FileNotFoundError(f"{p}: stage {stage} has not run for {model} (run notebooks/{stage}.ipynb first)")
    return read_json(p)


def verify_stage(model: str, stage: str) -> Path:
    """Check every artifact of a finished stage against its manifest; return the stage's folder.

    Each file the manifest lists must exist, have the recorded size (where the manifest records sizes) and the
    recorded SHA-256: a file that is missing, truncated, swapped or edited after the stage finished is caught
    here, before anything reads it.

    Raises:
        FileNotFoundError: the stage has not run (no manifest).
        StaleArtifactError: naming the file, what is wrong with it, and the stage to re-run.
    """
    manifest = read_manifest(model, stage)
    folder = run_dir(model) / stage
    rerun = f"re-run stage {stage} for {model} (notebooks/{stage}.ipynb) and the stages after it"
    artifacts = manifest.get("artifacts")
    if not isinstance(artifacts, dict):
        raise StaleArtifactError(f"{folder / 'manifest.json'}: no 'artifacts' table of checksums; {rerun}")
    sizes = manifest.get("artifact_bytes") or {}
    for name, digest in sorted(artifacts.items()):
        path = folder / name
        if not path.is_file():
            raise StaleArtifactError(f"{path}: missing, though stage {stage} wrote it; {rerun}")
        size = path.stat().st_size
        if name in sizes and size != sizes[name]:
            what = "truncated" if size < sizes[name] else "changed"
            raise StaleArtifactError(f"{path}: {what} ({size} bytes, stage {stage} wrote {sizes[name]}); {rerun}")
        actual = sha256_file(path)
        if actual != digest:
            raise StaleArtifactError(f"{path}: changed since stage {stage} finished (SHA-256 {actual[:12]}..., "
                                     f"the manifest records {str(digest)[:12]}...); {rerun}")
    return folder


def require_stage(model: str, stage: str) -> Path:
    """Folder of a finished upstream stage, every artifact checked against its manifest (:func:`verify_stage`)."""
    return verify_stage(model, stage)
