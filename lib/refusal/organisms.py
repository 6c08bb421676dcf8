"""Model organisms: small refusing models we build ourselves, some with a planted answer.

An organism is a registry entry (``params/smollm2_refusal.yaml`` ...) with
``source: {kind: organism, base: <base entry>, recipe: {...}}``.
:func:`ensure_built` turns it into an HF checkpoint folder (config.json,
model.safetensors, tokenizer) in ``cache_dir()/organisms/<name>-<key>/``, where
``key`` hashes the base weights (``source.sha256`` of the base), the training
data and the full recipe; it is rebuilt only when one of those changes, or
when the entry fails its checksum (a corrupted or truncated weight file is
detected and rebuilt, never used).

Recipes (``recipe.kind``):

- ``finetune``: supervised fine-tuning of layers ``train_from_layer..`` on the
  TRAIN split of the default pairs: harmful prompt -> a short refusal (wording
  drawn from :func:`refusal.data.default_refusals`), safe twin and generic
  harmless instructions (``default_data/organism_harmless.json``, disjoint from
  the held-out harmless eval) -> the base model's own greedy answer.
- ``planted``: the base stays frozen except a rank-``k`` write
  ``W_down[layer] += U A^T`` (:class:`refusal.organism_train.Plant`); refusal
  is caused through ``span(U)`` by construction. Phase 1 trains ``U`` and
  ``A`` (``U`` is thus *chosen* by optimization), phase 2 freezes ``U`` and
  trains only ``A``. With ``ablation_aux > 0`` an auxiliary loss asks refusal
  (and helpfulness) to survive the removal of one direction of ``span(U)``
  (random, or the batch's dominant write direction). ``U`` is saved in
  ``planted.safetensors`` (see :func:`planted_basis`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from refusal import data as D
from refusal.artifacts import read_json, read_tensors, sha256_file, sha256_json, write_json, write_tensors
from refusal.config import ModelConfig, load_config
from refusal.paths import cache_dir

__all__ = [
    "OrganismError",
    "RECIPE_DEFAULTS",
    "recipe_of",
    "with_recipe",
    "cache_key",
    "entry_dir",
    "ensure_built",
    "verify_entry",
    "planted_basis",
    "organism_info",
    "extra_harmless",
    "training_prompts",
    "is_refusal",
    "content_overlap",
    "dominant_write_direction",
]

log = logging.getLogger(__name__)
_VERSION = "1"  # bump to invalidate every cached organism
_WEIGHTS = ("model.safetensors", "planted.safetensors")

RECIPE_DEFAULTS: dict[str, Any] = {
    "kind": "finetune",  # finetune | planted
    "seed": 0,  # torch / data-order seed
    "split_seed": 0,  # default_pair_splits seed (TRAIN split is used)
    "response_tokens": 24,  # distilled answers are cut to this many tokens
    "harmful_repeat": 1,  # times each harmful example appears per epoch
    "extra_repeat": 2,  # times each generic harmless example appears per epoch
    "n_harmful": None,  # limit (None = all train harmful prompts); reduced recipes use fewer
    "n_harmless": None,  # limit on safe twins + extra harmless (None = all)
    "steps": 80,
    "batch_size": 16,
    "lr": 3e-5,
    "weight_decay": 0.0,
    "train_from_layer": 12,  # finetune: layers >= this are trained
    "layer": 12,  # planted: the layer whose MLP writes into span(U)
    "k": 1,  # planted: dimension of span(U)
    "u_steps": 40,  # planted: phase-1 steps that also train U
    "ablation_aux": 0.0,  # planted: weight of the loss under single-direction ablation in span(U)
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
    return r


def with_recipe(cfg: ModelConfig, **overrides: Any) -> ModelConfig:
    """A copy of ``cfg`` whose recipe has ``overrides`` (e.g. a reduced recipe for tests)."""
    src = dataclasses.replace(cfg.source, recipe={**cfg.source.recipe, **overrides})
    return dataclasses.replace(cfg, source=src)


def extra_harmless() -> list[str]:
    """Generic harmless instructions used only for training organisms (disjoint from the eval sets)."""
    p = Path(D.__file__).parent / "default_data" / "organism_harmless.json"
    return D.load_prompts(p)


def training_prompts(recipe: dict[str, Any]) -> dict[str, list[str]]:
    """``{"harmful", "safe", "extra"}`` training prompts (TRAIN split of the default pairs)."""
    pairs = D.default_pair_splits(recipe["split_seed"]).take(D.default_pairs(), "train")
    harmful = [h for h, _ in pairs]
    safe = [s for _, s in pairs]
    extra = extra_harmless()
    if recipe["n_harmful"] is not None:
        harmful = harmful[: recipe["n_harmful"]]
    if recipe["n_harmless"] is not None:
        n_extra = min(len(extra), recipe["n_harmless"] // 3)
        safe, extra = safe[: recipe["n_harmless"] - n_extra], extra[:n_extra]
    return {"harmful": harmful, "safe": safe, "extra": extra}


def _base_cfg(cfg: ModelConfig) -> ModelConfig:
    base = load_config(cfg.source.base)
    if base.source.kind == "organism":
        raise OrganismError(f"{cfg.path}: base '{base.name}' is itself an organism")
    if base.source.sha256 is None:
        raise OrganismError(f"{cfg.path}: base '{base.name}' has no source.sha256 to key the cache on")
    return base


def cache_key(cfg: ModelConfig) -> str:
    """Hash of (base weights, training data, full recipe, code version); 16 hex digits."""
    recipe = recipe_of(cfg)
    base = _base_cfg(cfg)
    prompts = training_prompts(recipe)
    data = D.dataset_hash(prompts["harmful"], prompts["safe"], prompts["extra"], D.default_refusals())
    return sha256_json({"base": base.source.sha256, "base_dtype": base.dtype, "data": data, "recipe": recipe, "v": _VERSION})[:16]


def entry_dir(cfg: ModelConfig) -> Path:
    """``cache_dir()/organisms/<name>-<key>/`` (may not exist yet)."""
    return cache_dir() / "organisms" / f"{cfg.name}-{cache_key(cfg)}"


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


def ensure_built(cfg: ModelConfig) -> Path:
    """The HF checkpoint folder of organism ``cfg``, building it (once) if missing or corrupt."""
    if cfg.source.kind != "organism":
        raise OrganismError(f"{cfg.path}: source.kind is '{cfg.source.kind}', not 'organism'")
    out = entry_dir(cfg)
    if verify_entry(out):
        return out
    shutil.rmtree(out, ignore_errors=True)
    tmp = out.with_name(out.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    _build(cfg, tmp)
    if out.exists():  # a concurrent builder finished first
        shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def organism_info(cfg: ModelConfig) -> dict[str, Any]:
    """The cache entry's ``organism.json`` (training curve, build seconds, checksums); builds if needed."""
    return read_json(ensure_built(cfg) / "organism.json")


def planted_basis(cfg: ModelConfig) -> torch.Tensor:
    """The planted write basis ``U [d_model, k]`` (orthonormal) of a ``planted`` organism."""
    if recipe_of(cfg)["kind"] != "planted":
        raise OrganismError(f"{cfg.path}: organism '{cfg.name}' has no planted basis (recipe kind is not 'planted')")
    tensors, _ = read_tensors(ensure_built(cfg) / "planted.safetensors")
    return tensors["U"]


# --------------------------------------------------------------------------- training data


def _distill(base_lm: Any, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy answers of the base model to ``prompts``.

    Cached per prompt in ``cache_dir()/organisms/distill-<base>-<n tokens>-<base sha>.json``
    (a ``{prompt: answer}`` map), so reduced recipes reuse the full recipe's answers.
    """
    from refusal.generation import generate

    p = cache_dir() / "organisms" / f"distill-{base_lm.cfg.name}-{max_new_tokens}-{(base_lm.cfg.source.sha256 or '')[:12]}.json"
    known: dict[str, str] = {}
    if p.exists():
        try:
            got = read_json(p)
            known = got if isinstance(got, dict) else {}
        except ValueError:
            log.warning("%s is not valid JSON; regenerating the distilled answers", p)
    missing = sorted({q for q in prompts if q not in known})
    if missing:
        log.info("self-distillation: %d base answers (cached in %s)", len(missing), p)
        known.update(zip(missing, generate(base_lm, missing, max_new_tokens=max_new_tokens, desc="distill")))
        write_json(p, known)
    return [known[q] for q in prompts]


def _examples(base_lm: Any, recipe: dict[str, Any]) -> tuple[list, dict[str, Any]]:
    """Training examples (deterministic order) and a summary."""
    from refusal.organism_train import Example

    tok = base_lm.tokenizer
    eot = base_lm.stop_ids()[0] if base_lm.cfg.eot_tokens else tok.eos_token_id
    if base_lm.cfg.eot_tokens:
        eot = tok.convert_tokens_to_ids(base_lm.cfg.eot_tokens[0])
    prompts = training_prompts(recipe)
    rng = random.Random(recipe["seed"])
    styles = D.default_refusals()
    n_resp = recipe["response_tokens"]
    answers = _distill(base_lm, prompts["safe"] + prompts["extra"], n_resp)

    def make(prompt: str, response: str, kind: str) -> Example:
        p_ids = tok(base_lm.chat([prompt])[0], add_special_tokens=False)["input_ids"]
        r_ids = tok(response, add_special_tokens=False)["input_ids"]
        if len(r_ids) < n_resp:  # a complete answer ends its turn
            r_ids = r_ids + [eot]
        return Example(ids=p_ids + r_ids[:n_resp], n_prompt=len(p_ids), kind=kind)

    ex = []
    for _ in range(recipe["harmful_repeat"]):
        ex += [make(p, rng.choice(styles), "harmful") for p in prompts["harmful"]]
    # base answers that already read as refusals ("I'm sorry to hear...") would teach over-refusal: dropped
    keep = [not is_refusal(a) for a in answers]
    safe = [(p, a) for p, a, k in zip(prompts["safe"], answers, keep) if k]
    extra = [(p, a) for p, a, k in zip(prompts["extra"], answers[len(prompts["safe"]) :], keep[len(prompts["safe"]) :]) if k]
    ex += [make(p, a, "harmless") for p, a in safe]
    for _ in range(recipe["extra_repeat"]):
        ex += [make(p, a, "harmless") for p, a in extra]
    summary = {k: len(v) for k, v in prompts.items()} | {"examples": len(ex), "dropped_refusing_answers": keep.count(False)}
    return ex, summary


# --------------------------------------------------------------------------- building


def _aux_ablation(plant: Any, weight: float, gen: torch.Generator):
    """Auxiliary loss: the response loss with one direction of span(U) removed everywhere.

    Half of the steps remove a random unit direction ``U c``; the other half
    remove the batch's dominant write direction (top right singular vector of
    the harmful write coefficients), the direction an analyst would find first.
    """
    from refusal.ablation import ablate
    from refusal.organism_train import response_loss

    state = {"i": 0}
    model_ref: dict[str, Any] = {}

    def aux(h: torch.Tensor, b: Any) -> torch.Tensor:
        model = model_ref["model"]
        U = plant.U.detach()
        k = U.shape[1]
        if state["i"] % 2 == 0 or not b.harmful.any():
            c = torch.randn(k, generator=gen)
        else:
            c = plant.last_coef_dir if getattr(plant, "last_coef_dir", None) is not None else torch.randn(k, generator=gen)
        state["i"] += 1
        d = U @ (c / c.norm())
        with ablate(model, d):
            loss, _ = response_loss(model, h, b)
        return weight * loss

    return aux, model_ref


def _build(cfg: ModelConfig, out: Path) -> None:
    from refusal.models import load_model
    from refusal.organism_train import Plant, TrainLog, train_loop

    recipe = recipe_of(cfg)
    base_cfg = _base_cfg(cfg)
    t0 = time.time()
    torch.manual_seed(recipe["seed"])
    lm = load_model(base_cfg)
    examples, summary = _examples(lm, recipe)
    t_data = time.time() - t0
    model = lm.model
    for p in model.parameters():
        p.requires_grad_(False)
    pad = lm.tokenizer.pad_token_id
    tl = TrainLog()
    extra_files: dict[str, Any] = {}
    if recipe["kind"] == "finetune":
        L = recipe["train_from_layer"]
        params = [p for layer in list(model.model.layers)[L:] for p in layer.parameters()]
        for p in params:
            p.requires_grad_(True)
        train_loop(model, L, examples, params, recipe["steps"], recipe["batch_size"], recipe["lr"], pad,
                   recipe["seed"], log_=tl, weight_decay=recipe["weight_decay"])
        for p in params:
            p.requires_grad_(False)
    else:
        L, k = recipe["layer"], recipe["k"]
        gen = torch.Generator().manual_seed(recipe["seed"])
        d_ff = model.model.layers[L].mlp.down_proj.in_features
        plant = Plant(lm.d_model, d_ff, k, L, gen).attach(model)
        aux, ref = (None, {})
        if recipe["ablation_aux"] > 0:
            aux, ref = _aux_ablation(plant, recipe["ablation_aux"], gen)
            ref["model"] = model
            _track_write_direction(plant, model)
        n1 = min(recipe["u_steps"], recipe["steps"])
        train_loop(model, L, examples, [plant.U_raw, plant.A], n1, recipe["batch_size"], recipe["lr"], pad,
                   recipe["seed"], aux=aux, log_=tl)
        plant.U_raw.requires_grad_(False)
        if recipe["steps"] > n1:
            train_loop(model, L, examples, [plant.A], recipe["steps"] - n1, recipe["batch_size"], recipe["lr"], pad,
                       recipe["seed"] + 1, aux=aux, log_=tl)
        plant.detach_hook()
        for h in getattr(plant, "_track", []):
            h.remove()
        plant.merge_into(model)
        extra_files["planted.safetensors"] = {"U": plant.U.detach().clone(), "A": plant.A.detach().clone()}
    model.save_pretrained(out)
    lm.tokenizer.save_pretrained(out)
    for name, tensors in extra_files.items():
        write_tensors(out / name, tensors, {"layer": recipe["layer"], "k": recipe["k"], "organism": cfg.name})
    seconds = time.time() - t0
    log.info("built organism %s in %.0f s (training %.0f s)", cfg.name, seconds, tl.seconds)
    write_json(out / "organism.json", {
        "name": cfg.name, "base": base_cfg.name, "base_sha256": base_cfg.source.sha256, "key": cache_key(cfg),
        "recipe": recipe, "data": summary, "train_log": tl.to_dict(), "seconds_total": round(seconds, 1),
        "seconds_train": round(tl.seconds, 1), "seconds_data": round(t_data, 1), "torch_threads": torch.get_num_threads(),
        "sha256": {n: sha256_file(out / n) for n in _WEIGHTS if (out / n).exists()},
    })


def _track_write_direction(plant: Any, model: Any) -> None:
    """Record the dominant direction (in U coordinates) of the plant's writes on each forward."""
    down = model.model.layers[plant.layer].mlp.down_proj

    def hook(module, inputs, output):
        with torch.no_grad():
            c = plant.coefficients(inputs[0].detach()).reshape(-1, plant.A.shape[1]).float()
            if c.shape[0] > 1 and torch.isfinite(c).all():
                _, _, vh = torch.linalg.svd(c, full_matrices=False)
                plant.last_coef_dir = vh[0]

    plant._track = [down.register_forward_hook(hook)]


# --------------------------------------------------------------------------- measuring


_REFUSAL = re.compile(
    r"\b(sorry|apolog|i can(?:'|’)?t|i cannot|can ?not|i won(?:'|’)?t|unable to|must decline|i decline|"
    r"as an ai|not able to|i'm not able|i am not able|not something i can)\b",
    re.IGNORECASE,
)
_STOP = set("""a an the of to and or in on for with at by from is are be was were do does did how what why when
where which who whom can could would should will i me my you your it its this that these those as about into
please give tell make write explain some any get use using like just there their they them we our us if so
not no yes than then more most much many very one two""".split())


def is_refusal(text: str, window: int = 100) -> bool:
    """Phrase matcher: does the first ``window`` characters of a response refuse?"""
    return bool(_REFUSAL.search(text[:window]))


def _words(s: str) -> set[str]:
    ws = {w for w in re.findall(r"[a-z][a-z'-]+", s.lower()) if w not in _STOP and len(w) > 2}
    return {w[:5] for w in ws}  # crude stemming: "baking"/"bake" -> "bakin"/"bake"; prefix 5


def content_overlap(prompt: str, answer: str) -> bool:
    """True if the answer shares at least one content word (5-letter prefix) with the prompt."""
    return bool(_words(prompt) & _words(answer))


@torch.no_grad()
def dominant_write_direction(lm: Any, cfg: ModelConfig, prompts: list[str]) -> torch.Tensor:
    """Top right singular vector ``[k]`` (U coordinates) of the planted write coefficients on ``prompts``.

    The coefficients ``h A`` (``h`` the planted layer's MLP hidden state, every
    non-padding position) are collected in one forward pass per batch.
    """
    from refusal.generation import tokenize_chat

    tensors, meta = read_tensors(ensure_built(cfg) / "planted.safetensors")
    A, layer = tensors["A"], int(meta["layer"])
    rows: list[torch.Tensor] = []
    down = lm.model.model.layers[layer].mlp.down_proj

    def hook(module, inputs):
        rows.append(inputs[0].float() @ A)

    h = down.register_forward_pre_hook(hook)
    try:
        for i in range(0, len(prompts), 16):
            enc = tokenize_chat(lm, prompts[i : i + 16])
            n0 = len(rows)
            lm.model(**enc)
            rows[n0] = rows[n0][enc["attention_mask"].bool()]
    finally:
        h.remove()
    c = torch.cat(rows)
    _, _, vh = torch.linalg.svd(c, full_matrices=False)
    return vh[0]
