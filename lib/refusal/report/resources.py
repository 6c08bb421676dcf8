"""What a job of the report workflow asks the scheduler for (memory, GPU) and how long it is expected to take.

Memory comes from the registry (``mem_gb``), else from an estimate of the model's size; a stage that loads a model
asks for one GPU when the run is on a GPU. The expected seconds (the last run's, else a default scaled by the
model's size) order the jobs: the workflow starts the longest chains first.
"""

from __future__ import annotations

import json

from refusal.config import STAGES, ModelConfig
from refusal.device import cpu_dtype
from refusal.paths import runs_dir
from refusal.report.outputs import weights_marker

__all__ = ["LIGHT_STAGES", "CROSS_MEM_MB", "WHOLE_MACHINE", "mem_mb", "resources", "estimate_seconds"]

# Stages that load no model (tokenizer and statistics only): no GPU, little memory.
LIGHT_STAGES = ("01_data", "03_separability")
# Host memory (MB) of the cross-model stages: tables and plots, and for 08 the local judge server (a 1.5B GGUF in
# llama.cpp); not listed: 2000.
CROSS_MEM_MB = {"08_judges": 6000}
# Cross-model stages that take every core of the machine (the local judge server of 08: llama.cpp threads spin at
# their barriers, so sharing a core with another job slows it far more than the share).
WHOLE_MACHINE = ("08_judges",)
# Seconds of each job for a SmolLM2-135M-sized model on one CPU thread, before any run has measured them (the
# priorities only order the jobs; a finished stage's manifest records its own seconds, used instead).
_DEFAULT_SECONDS = {"00_organism": 300, "01_data": 20, "02_extract": 120, "03_separability": 30, "04_ablate": 900,
                    "05_orthogonalize": 120, "06_benchmark": 300, "convert": 60, "fetch": 300, "distill": 600,
                    "organism": 400}
_REF_WORK = 12 * 30 * 576**2 + 49152 * 576  # _token_work of SmolLM2-135M
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 4}  # auto: float32 on some CPUs, so ask for that
# How much faster a stage runs where ``cpu_dtype: auto`` resolves to bfloat16 (generation of a batch of 64,
# Qwen2.5-Coder-0.5B, one thread: 32.0 s float32, 10.1 s bfloat16; 2026-12-01, see refusal.device).
_BF16_SPEEDUP = 3.0


def _n_params(cfg: ModelConfig) -> float:
    """A size estimate from the registry alone: 12 d_model^2 per layer (embeddings left out)."""
    return 12.0 * cfg.n_layers * cfg.d_model**2


def _token_work(cfg: ModelConfig) -> float:
    """The weights a token's forward pass multiplies: :func:`_n_params` plus the unembedding (vocab_size x d_model)
    where the entry states its vocabulary. Gemma 3 270M's 262k-token
    unembedding is 65% of its compute per token: without it its jobs would rank below SmolLM2-135M's, while they
    take about twice as long (stage 04, 2026-12-01: 1180 s against about 620 s)."""
    return _n_params(cfg) + (cfg.vocab_size or 0) * cfg.d_model


def mem_mb(cfg: ModelConfig, job: str, gpu: bool) -> int:
    """Host memory (MB) a job of ``cfg`` asks for: the entry's ``mem_gb`` when it states one, else an estimate:
    on the CPU ~6 copies of the weights in ``cpu_dtype`` (two models, the bridge, buffers; Qwen2.5-Coder-1.5B
    measured 20.2 GB on 2 cores); on a GPU run 3 copies in ``dtype`` (load, save). Light stages ask for 2 GB."""
    if job in LIGHT_STAGES:
        return 2000
    if cfg.mem_gb is not None:
        return int(cfg.mem_gb * 1000)
    nbytes = _DTYPE_BYTES[cfg.dtype if gpu else cfg.cpu_dtype]
    copies = 3 if gpu else 6
    return int(1000 * (3 + copies * _n_params(cfg) * nbytes / 1e9))


def resources(cfg: ModelConfig | None, job: str, gpu_run: bool) -> dict[str, int]:
    """``mem_mb`` and ``gpu`` of a job (a stage, or ``convert``, ``distill``, ``organism``, ``fetch``)."""
    if cfg is None or job == "fetch":
        return {"mem_mb": 2000, "gpu": 0}
    loads_model = job not in LIGHT_STAGES and job != "convert"  # a conversion de-quantizes on the CPU
    return {"mem_mb": mem_mb(cfg, job, gpu_run), "gpu": int(gpu_run and loads_model)}


def estimate_seconds(cfg: ModelConfig, job: str) -> float:
    """Seconds a job took in its last run (the stage's manifest, the organism's build record), else a default
    scaled by the model's size."""
    if job in STAGES:
        p = runs_dir() / cfg.name / job / "manifest.json"
        if p.is_file():
            try:
                secs = json.loads(p.read_text()).get("seconds")
                if isinstance(secs, (int, float)):
                    return float(secs)
            except ValueError:
                pass
    if job == "organism":
        p = weights_marker(cfg)
        if p.is_file():
            try:
                return float(json.loads(p.read_text()).get("seconds_total", 0)) or _DEFAULT_SECONDS[job]
            except ValueError:
                pass
    secs = _DEFAULT_SECONDS.get(job, 60) * max(0.25, _token_work(cfg) / _REF_WORK)
    if job in STAGES and cpu_dtype(cfg) == "bfloat16":  # builds and conversions run in float32 whatever the entry says
        secs /= _BF16_SPEEDUP
    if job == "organism":  # per training step: planted recipes train on more streams, k > 1 on one more
        r = cfg.source.recipe
        secs *= r.get("steps", 80) / 60 * (1.5 if r.get("kind") == "planted" else 1.0) * (1.4 if r.get("k", 1) > 1 else 1.0)
    return secs

