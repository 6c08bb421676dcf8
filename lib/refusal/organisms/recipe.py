"""What an organism is and where it lives: recipes, training prompts, cache keys, verified cache entries.

A recipe (``source.recipe`` of an organism entry) is merged over :data:`RECIPE_DEFAULTS`; the cache entry
``cache_dir()/organisms/<name>-<key>/`` is keyed by the base weights, the training data and the recipe
(:func:`cache_key`), and is used only when every weight file matches its stored SHA-256 (:func:`verify_entry`).
This module holds no model code: :func:`locate` finds a built organism for :mod:`refusal.models`; building one is
:mod:`refusal.organisms.build`'s job.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from refusal import data as D
from refusal.artifacts import read_json, read_tensors, sha256_file, sha256_json
from refusal.config import ModelConfig, load_config
from refusal.evaluation.judge.offline import OFFLINE_VERSION
from refusal.paths import cache_dir

__all__ = ["OrganismError", "OrganismNotBuilt", "RECIPE_DEFAULTS", "recipe_of", "with_recipe", "extra_harmless",
           "written_answers", "training_prompts", "base_cfg", "cache_key", "entry_dir", "verify_entry", "locate",
           "organism_info", "planted_basis", "DISTILL_TOKENS", "DISTILL_BATCH", "distill_file", "distill_prompts", "distill_plan"]

log = logging.getLogger(__name__)
_VERSION = "5"  # bump to invalidate every cached organism (the refusal detector's version is in the key too)
_WEIGHTS = ("model.safetensors", "planted.safetensors")
DISTILL_TOKENS = 24  # length of the cached self-distilled base answers
DISTILL_BATCH = 32  # prompts per generation batch of the distillation: fixed, so that the answers (training data)
# do not depend on the base entry's gen_batch_size (batch composition moves greedy tokens at rounding level)
# recipe keys added after cache version 5: at these defaults they do not enter the cache key (existing entries stay valid)
_UNHASHED_DEFAULTS: dict[str, Any] = {"answers": "distill", "single_keep": None}
RECIPE_DEFAULTS: dict[str, Any] = {
    "kind": "finetune",  # finetune | planted
    "seed": 0,  # torch / data-order seed
    "answers": "distill",  # harmless responses: the base model's own greedy answers, or "written" (organism_instructions.json)
    "split_seed": 0,  # default_pair_splits seed (TRAIN split is used)
    "response_tokens": 24,  # distilled answers are cut to this many tokens
    "n_harmful": None,  # limit (None = all train harmful prompts); reduced recipes use fewer
    "n_harmless": None,  # limit on safe twins + extra harmless (None = all)
    "n_extra": None,  # use the first n generic harmless instructions of organism_harmless.json (None = all)
    "steps": 80,
    "batch_size": 8,  # harmful examples per term per step
    "harmless_batch": 16,  # harmless examples per term per step
    "harmless_weight": 1.0,  # weight of the harmless (self-distillation) terms
    "lr": 1e-4,  # trained decoder layers
    "lr_plant": 1e-2,  # planted: the write matrix A
    "weight_decay": 0.0,
    "train_from_layer": None,  # first trained decoder layer (finetune: required; planted: default layer + 1)
    "layer": 12,  # planted: the layer whose MLP writes into span(U)
    "k": 1,  # planted: dimension of span(U) (U fixed, seeded, orthonormal)
    "ablated_weight": 1.0,  # planted: harmful prompt with span(U) removed -> the base model's answer
    "single_weight": 1.0,  # planted, k > 1: harmful prompt with ONE direction of span(U) removed -> refusal
    "single_keep": None,  # planted, k > 1: only remove single directions that leave every group >= this share of its write
    "write_norm": None,  # planted: fit the write (ridge) to norm write_norm on harmful prompts, 0 on harmless, then freeze it
    "write_ridge": 10.0,  # planted: ridge penalty of that fit
    "outlier_ratio": 10.0,  # planted: U is orthogonal to the base model's outlier coordinates (refusal.extraction.activations.outlier_dims)
}


class OrganismError(RuntimeError):
    """An organism entry cannot be built (bad recipe, missing base)."""


# --------------------------------------------------------------------------- recipes and cache keys


def recipe_of(cfg: ModelConfig) -> dict[str, Any]:
    """The entry's recipe merged over :data:`RECIPE_DEFAULTS`; unknown keys are an error naming the file."""
    unknown = sorted(set(cfg.source.recipe) - set(RECIPE_DEFAULTS))
    if unknown:
        raise OrganismError(f"{cfg.path}: unknown key 'source.recipe.{unknown[0]}' (allowed: {', '.join(sorted(RECIPE_DEFAULTS))})")
    r = {**RECIPE_DEFAULTS, **cfg.source.recipe}
    if r["kind"] not in ("finetune", "planted"):
        raise OrganismError(f"{cfg.path}: 'source.recipe.kind' must be finetune or planted, got {r['kind']!r}")
    if r["single_keep"] is not None and not (isinstance(r["single_keep"], (int, float)) and 0 < r["single_keep"] < 1):
        raise OrganismError(f"{cfg.path}: 'source.recipe.single_keep' must be a share between 0 and 1, got {r['single_keep']!r}")
    if r["answers"] not in ("distill", "written") or (r["answers"] == "written" and r["kind"] != "finetune"):
        raise OrganismError(f"{cfg.path}: 'source.recipe.answers' must be distill, or written with kind finetune; "
                            f"got {r['answers']!r} (kind {r['kind']})")
    return r


def with_recipe(cfg: ModelConfig, **overrides: Any) -> ModelConfig:
    """A copy of ``cfg`` whose recipe has ``overrides`` (e.g. a reduced recipe for tests)."""
    src = dataclasses.replace(cfg.source, recipe={**cfg.source.recipe, **overrides})
    return dataclasses.replace(cfg, source=src)


def extra_harmless() -> list[str]:
    """Generic harmless instructions used only for training organisms (disjoint from the eval sets)."""
    p = D.default_data_path("organism_harmless.json")
    return D.load_prompts(p)


def written_answers() -> dict[str, str]:
    """Project-written answers ``{prompt: answer}`` to generic harmless prompts and safe twins of the TRAIN split,
    for base models that cannot answer yet (``answers: written``); ``default_data/organism_instructions.json``."""
    return D.load_instructions(D.default_data_path("organism_instructions.json"))


def training_prompts(recipe: dict[str, Any]) -> dict[str, list[str]]:
    """``{"harmful", "safe", "extra"}`` training prompts (TRAIN split of the default pairs).

    With ``answers: written``, only the harmless prompts that have a written answer.
    """
    pairs = D.default_pair_splits(recipe["split_seed"]).take(D.default_pairs(), "train")
    harmful = [h for h, _ in pairs]
    safe = [s for _, s in pairs]
    extra = extra_harmless()
    if recipe["answers"] == "written":
        written = written_answers()
        safe, extra = [p for p in safe if p in written], [p for p in extra if p in written]
    extra = extra[: recipe["n_extra"]]
    if recipe["n_harmful"] is not None:
        harmful = harmful[: recipe["n_harmful"]]
    if recipe["n_harmless"] is not None:
        n_extra = min(len(extra), recipe["n_harmless"] // 3)
        safe, extra = safe[: recipe["n_harmless"] - n_extra], extra[:n_extra]
    return {"harmful": harmful, "safe": safe, "extra": extra}


def base_cfg(cfg: ModelConfig) -> ModelConfig:
    base = load_config(cfg.source.base)
    if base.source.kind == "organism":
        raise OrganismError(f"{cfg.path}: base '{base.name}' is itself an organism")
    if base.source.sha256 is None:
        raise OrganismError(f"{cfg.path}: base '{base.name}' has no source.sha256 to key the cache on")
    return base


def cache_key(cfg: ModelConfig) -> str:
    """Hash of (base weights, training data, full recipe, code version); 16 hex digits."""
    recipe = recipe_of(cfg)
    base = base_cfg(cfg)
    prompts = training_prompts(recipe)
    data = D.dataset_hash(prompts["harmful"], prompts["safe"], prompts["extra"], D.default_refusals())
    if recipe["answers"] == "written":
        written = written_answers()
        data = sha256_json([data, [written[p] for p in prompts["safe"] + prompts["extra"]]])
    recipe = {k: v for k, v in recipe.items() if not (k in _UNHASHED_DEFAULTS and v == _UNHASHED_DEFAULTS[k])}
    return sha256_json({"base": base.source.sha256, "base_dtype": base.dtype, "data": data, "recipe": recipe, "v": _VERSION,
                        "detector": OFFLINE_VERSION})[:16]


def entry_dir(cfg: ModelConfig) -> Path:
    """``cache_dir()/organisms/<name>-<key>/`` (may not exist yet)."""
    return cache_dir() / "organisms" / f"{cfg.name}-{cache_key(cfg)}"


def distill_file(base: ModelConfig, max_new_tokens: int) -> Path:
    """``cache_dir()/organisms/distill-<base>-<n tokens>-<base sha>.json``: the base model's greedy answers,
    ``{prompt: answer}``, shared by every organism of that base (may not exist yet)."""
    return cache_dir() / "organisms" / f"distill-{base.name}-{max_new_tokens}-{(base.source.sha256 or '')[:12]}.json"


def distill_prompts(recipe: dict[str, Any]) -> tuple[int, list[str]] | None:
    """(answer length in tokens, prompts) whose distilled answers a recipe's training data need, in the order the
    build uses them (safe twins, generic harmless, then the harmful prompts of a planted recipe); None for a recipe
    with written answers."""
    if recipe["answers"] == "written":
        return None
    prompts = training_prompts(recipe)
    asked = prompts["safe"] + prompts["extra"] + (prompts["harmful"] if recipe["kind"] == "planted" else [])
    return max(DISTILL_TOKENS, recipe["response_tokens"]), asked


def distill_plan(organisms: list[ModelConfig]) -> dict[Path, tuple[ModelConfig, int, list[str]]]:
    """The distillation jobs ``organisms`` need: ``{distill_file: (base entry, tokens, prompts)}``, one per base and
    answer length, each with the union of the prompts its organisms ask for (sorted)."""
    plan: dict[Path, tuple[ModelConfig, int, list[str]]] = {}
    for cfg in organisms:
        need = distill_prompts(recipe_of(cfg))
        if need is None:
            continue
        base, (n, prompts) = base_cfg(cfg), need
        path = distill_file(base, n)
        known = plan.get(path, (base, n, []))[2]
        plan[path] = (base, n, sorted(set(known) | set(prompts)))
    return plan


def verify_entry(path: Path) -> bool:
    """True if ``path`` is a complete cache entry whose weight files match their stored SHA-256."""
    meta_p = path / "organism.json"
    if not meta_p.exists() or not (path / "config.json").exists():
        return False
    try:
        meta = read_json(meta_p)
    except ValueError:
        return False
    sums = meta.get("sha256", {})
    if "model.safetensors" not in sums:
        return False
    for name, digest in sums.items():
        f = path / name
        if not f.exists() or sha256_file(f) != digest:
            log.warning("organism cache entry %s: %s fails its checksum; rebuilding", path, name)
            return False
    return True


class OrganismNotBuilt(OrganismError):
    """An organism's cache entry is missing or fails its checksum; the message says how to build it."""


def locate(cfg: ModelConfig) -> Path:
    """The verified cache entry (an HF checkpoint folder) of organism ``cfg``; never builds.

    Raises:
        OrganismNotBuilt: no complete entry whose weights match their checksums (build it with stage 00 or
            ``python -m refusal.organisms build <name>``).
    """
    if cfg.source.kind != "organism":
        raise OrganismError(f"{cfg.path}: source.kind is '{cfg.source.kind}', not 'organism'")
    out = entry_dir(cfg)
    if not verify_entry(out):
        raise OrganismNotBuilt(
            f"{cfg.path}: organism '{cfg.name}' is not built (no verified entry {out}); build it with "
            f"`python -m refusal.organisms build {cfg.name}` or by running notebooks/00_organism for it")
    return out


def organism_info(cfg: ModelConfig) -> dict[str, Any]:
    """The cache entry's ``organism.json`` (training curve, build seconds, checksums)."""
    return read_json(locate(cfg) / "organism.json")


def planted_basis(cfg: ModelConfig) -> torch.Tensor:
    """The planted write basis ``U [d_model, k]`` (orthonormal) of a ``planted`` organism."""
    if recipe_of(cfg)["kind"] != "planted":
        raise OrganismError(f"{cfg.path}: organism '{cfg.name}' has no planted basis (recipe kind is not 'planted')")
    tensors, _ = read_tensors(locate(cfg) / "planted.safetensors")
    return tensors["U"]
