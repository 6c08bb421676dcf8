"""Helpers for the stage notebooks: parameters, run folders, stage manifests.

A stage notebook's ``parameters`` cell names the model and sets tunables to
``None`` meaning "use the model's default": :func:`stage_setup` fills each
``None`` from the model's ``stage_params`` in ``params/<model>.yaml`` and then
from the notebook's built-in defaults. Each stage writes its artifacts in
``runs/<model>/<stage>/`` and finishes with :func:`write_manifest`, which
records provenance and the hashes of what it wrote, so the report runner can
tell whether a stage is up to date and later stages can check their inputs.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import yaml

from refusal.artifacts import provenance, read_json, sha256_file, write_json
from refusal.config import ModelConfig, load_config
from refusal.paths import run_dir

__all__ = ["stage_setup", "stage_dir", "write_manifest", "read_manifest", "require_stage"]

log = logging.getLogger(__name__)


def stage_setup(stage: str, model: str, defaults: dict[str, Any], given: dict[str, Any]) -> tuple[ModelConfig, dict[str, Any], Path]:
    """Resolve a stage's parameters for ``model``.

    Args:
        stage: e.g. ``"02_extract"``.
        model: registry name.
        defaults: the notebook's built-in defaults.
        given: the parameters cell's values (``None`` = not set).

    Returns:
        (config, resolved parameters, ``runs/<model>/<stage>/`` folder).
    """
    cfg = load_config(model)
    overrides = cfg.stage(stage)
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise ValueError(f"{cfg.path}: stage_params.{stage} has unknown key(s) {sorted(unknown)} (allowed: {sorted(defaults)})")
    params = {}
    for key, default in defaults.items():
        value = given.get(key)
        if isinstance(value, str) and default is not None and not isinstance(default, str):
            # `papermill -p key value` passes strings: read them as YAML ("[1, 2]", "0.5", "true")
            value = yaml.safe_load(value)
        params[key] = value if value is not None else overrides.get(key, default)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=False)
    return cfg, params, stage_dir(model, stage)


def stage_dir(model: str, stage: str) -> Path:
    d = run_dir(model) / stage
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_manifest(out_dir: Path, cfg: ModelConfig, params: dict[str, Any], started: float | None = None, **extra: Any) -> Path:
    """Write ``manifest.json``: provenance, parameters, SHA-256 of every artifact in ``out_dir``."""
    files = {p.name: sha256_file(p) for p in sorted(out_dir.iterdir()) if p.is_file() and p.name != "manifest.json" and not p.name.startswith(".")}
    rec = provenance(cfg, params=params, artifacts=files, **extra)
    if started is not None:
        rec["seconds"] = round(time.time() - started, 2)
    return write_json(out_dir / "manifest.json", rec)


def read_manifest(model: str, stage: str) -> dict[str, Any]:
    """The manifest of a finished stage; a clear error if the stage has not run."""
    p = run_dir(model) / stage / "manifest.json"
    if not p.exists():
        raise FileNotFoundError(f"{p}: stage {stage} has not run for {model} (run notebooks/{stage}.ipynb first)")
    return read_json(p)


def require_stage(model: str, stage: str) -> Path:
    """Folder of a finished upstream stage (checked through its manifest)."""
    read_manifest(model, stage)
    return run_dir(model) / stage
