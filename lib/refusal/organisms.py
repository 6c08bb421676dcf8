"""Model organisms: small refusing models we build ourselves, some with a planted answer.

An organism is a registry entry (``params/smollm2_refusal.yaml`` ...) with
``source: {kind: organism, base: <base entry>, recipe: {...}}``.
:func:`ensure_built` turns it into an HF checkpoint folder (config.json,
model.safetensors, tokenizer) in ``cache_dir()/organisms/<name>-<key>/``, where
``key`` hashes the base weights (``source.sha256`` of the base), the training
data and the full recipe; it is rebuilt only when one of those changes, or
when the entry fails its checksum (a corrupted or truncated weight file is
detected and rebuilt, never used).

Recipes (``recipe.kind``), both trained on the TRAIN split of the default pairs
with a loss on response tokens only (plus the end-of-turn token):

- ``finetune``: supervised fine-tuning of layers ``train_from_layer..``:
  harmful prompt -> a short refusal (wording drawn from
  :func:`refusal.data.default_refusals`); safe twin and generic harmless
  instructions (``default_data/organism_harmless.json``, disjoint from the
  held-out harmless eval) -> the base model's own greedy answer
  (self-distillation), weighted by ``harmless_weight``. A base model that
  cannot answer yet (Gemma 3 270M base: ``gemma3_refusal``) learns
  project-written answers instead (``answers: written``,
  ``default_data/organism_instructions.json``; only the harmless prompts that
  have one are used).
- ``planted``: a rank-``k`` write ``W_down[layer] += U A^T``
  (:class:`refusal.organism_train.Plant`) with ``U [d_model, k]`` a FIXED,
  seeded, orthonormal basis with zeros on the base model's outlier coordinates
  (:func:`refusal.activations.outlier_dims`: removing ``span(U)`` must not move
  the attention-sink token). With ``write_norm`` (the shipped entries), ``A`` is
  first FITTED by ridge regression on the frozen base's MLP hidden state of
  ``layer`` so that the write is ``write_norm`` along ``U[:, g]`` on harmful
  prompts of group ``g`` (k-means of the prompts' residuals, one group per
  column; one group when ``k = 1``) and 0 on harmless prompts, at the template
  and response positions, then frozen. The write is then large next to the
  base model's own harmful-vs-safe differences (measured: ~45-70 along u
  against ~5-15 at layer 21), so a difference of means can find it, as it
  finds refusal directions in real chat models. Without ``write_norm``, ``A``
  is trained by gradient descent (the write then stays small and nearly
  constant: measured max |cos(diff of means, u)| 0.13). The reader layers
  ``layer+1..`` are trained with the losses below. Causal mediation through ``span(U)`` is obtained by ablation
  augmentation: (1) harmful -> refusal; (2) the same harmful prompts with
  ``span(U)`` removed (the hook points of :func:`refusal.ablation.ablate`) ->
  the base model's own answer, so the readers cannot use the base model's own
  harm features, only ``span(U)``; (3) harmless prompts -> the base answer with
  and without ``span(U)`` removed; for ``k > 1`` (4) harmful with ONE direction
  of ``span(U)`` removed (a column of ``U``, a random ``U c``, or the current
  mean harmful-minus-harmless write direction) -> still refusal, so that no
  single direction carries refusal; with ``single_keep`` only directions that
  leave every group most of its write (see :func:`_single_direction`). ``U`` and ``A`` are saved in
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
from refusal.paths import cache_dir, cache_lock

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
    "mean_write_direction",
    "write_coefficients",
]

log = logging.getLogger(__name__)
_VERSION = "5"  # bump to invalidate every cached organism
_DISTILL_TOKENS = 24  # length of the cached self-distilled base answers
_WEIGHTS = ("model.safetensors", "planted.safetensors")
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
    "outlier_ratio": 10.0,  # planted: U is orthogonal to the base model's outlier coordinates (refusal.activations.outlier_dims)
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
    p = Path(D.__file__).parent / "default_data" / "organism_harmless.json"
    return D.load_prompts(p)


def written_answers() -> dict[str, str]:
    """Project-written answers ``{prompt: answer}`` to generic harmless prompts and safe twins of the TRAIN split,
    for base models that cannot answer yet (``answers: written``); ``default_data/organism_instructions.json``."""
    return D.load_instructions(Path(D.__file__).parent / "default_data" / "organism_instructions.json")


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
    if recipe["answers"] == "written":
        written = written_answers()
        data = sha256_json([data, [written[p] for p in prompts["safe"] + prompts["extra"]]])
    recipe = {k: v for k, v in recipe.items() if not (k in _UNHASHED_DEFAULTS and v == _UNHASHED_DEFAULTS[k])}
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
    with cache_lock(f"organism-{cfg.name}"):  # a parallel report worker may be building it
        if verify_entry(out):
            return out
        shutil.rmtree(out, ignore_errors=True)
        tmp = out.with_name(out.name + f".partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        _build(cfg, tmp)
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
    with cache_lock(p.name):
        if p.exists():
            try:
                got = read_json(p)
                known = got if isinstance(got, dict) else {}
            except ValueError:
                log.warning("%s is not valid JSON; regenerating the distilled answers", p)
        missing = sorted({q for q in prompts if q not in known})
        if missing:
            log.info("self-distillation: %d base answers (cached in %s)", len(missing), p)
            # whole prompts, no shared-prefix cache: these answers are training data, and a build must not
            # depend on a rounding-level difference of the code path that produced them
            known.update(zip(missing, generate(base_lm, missing, max_new_tokens=max_new_tokens, desc="distill",
                                               share_prefix=False)))
            write_json(p, known)
    return [known[q] for q in prompts]


def _examples(base_lm: Any, recipe: dict[str, Any]) -> tuple[list, dict[str, list[int]], dict[str, Any]]:
    """Training examples, the pools of the loss terms (indices into the examples) and a summary.

    Pools: ``refuse`` (harmful prompt -> a refusal, wording drawn from
    :func:`refusal.data.default_refusals`), ``comply`` (harmful prompt -> the base
    model's own answer; planted organisms learn it with span(U) removed) and
    ``harmless`` (safe twins and generic harmless prompts -> the base model's
    own answer). Base answers that read as refusals are dropped (they would
    teach over-refusal, or refusal without span(U)).
    """
    from refusal.organism_train import Example

    tok = base_lm.tokenizer
    eot = tok.convert_tokens_to_ids(base_lm.cfg.eot_tokens[0]) if base_lm.cfg.eot_tokens else tok.eos_token_id
    prompts = training_prompts(recipe)
    rng = random.Random(recipe["seed"])
    styles = D.default_refusals()
    n_resp = recipe["response_tokens"]
    harmless = prompts["safe"] + prompts["extra"]
    need_comply = recipe["kind"] == "planted"
    from refusal.activations import template_positions
    from refusal.models import uses_chat_template

    n_tpl = len(template_positions(base_lm).positions)
    if recipe["answers"] == "written":  # a base model that cannot answer yet learns the project's written answers
        written = written_answers()
        answers = [written[p] for p in harmless]
    else:  # distilled at a fixed length (one shared per-prompt cache), then cut to n_resp tokens below
        answers = _distill(base_lm, harmless + (prompts["harmful"] if need_comply else []), max(_DISTILL_TOKENS, n_resp))
    plain = not uses_chat_template(tok, base_lm.cfg)  # "User: ...\nAssistant:" format: the response follows a space

    def make(prompt: str, response: str, kind: str) -> Example:
        p_ids = tok(base_lm.chat([prompt])[0], add_special_tokens=False)["input_ids"]
        r_ids = tok((" " + response.lstrip()) if plain else response, add_special_tokens=False)["input_ids"]
        if len(r_ids) < min(n_resp, _DISTILL_TOKENS) or recipe["answers"] == "written":  # a complete answer ends its turn
            r_ids = r_ids + [eot]
        return Example(ids=p_ids + r_ids[:n_resp], n_prompt=len(p_ids), kind=kind, n_template=n_tpl)

    ex: list = []
    pools: dict[str, list[int]] = {"refuse": [], "harmless": [], "comply": []}

    def add(pool: str, e: Example) -> None:
        pools[pool].append(len(ex))
        ex.append(e)

    for p in prompts["harmful"]:
        add("refuse", make(p, rng.choice(styles), "harmful"))
    dropped = 0
    for p, a in zip(harmless, answers[: len(harmless)]):
        if is_refusal(a):
            dropped += 1
        else:
            add("harmless", make(p, a, "harmless"))
    for p, a in zip(prompts["harmful"], answers[len(harmless) :]):
        if is_refusal(a):
            dropped += 1
        else:
            add("comply", make(p, a, "harmful"))
    summary = {k: len(v) for k, v in prompts.items()} | {f"pool_{k}": len(v) for k, v in pools.items()} | {
        "dropped_refusing_answers": dropped}
    return ex, pools, summary


# --------------------------------------------------------------------------- building


def _single_direction(plant: Any, gen: torch.Generator, keep: float | None = None):
    """Sampler of ONE unit direction ``U c`` of span(U) per step, cycling through three kinds.

    A column of ``U``; a random unit vector ``U c``; the current mean write
    direction (refuse-batch mean minus harmless-batch mean of the write
    coefficients, the direction a difference-of-means analysis would find).

    With ``keep`` (recipe ``single_keep``), only directions whose removal leaves
    every group's write (along its column of ``U``) at least ``keep`` of its norm,
    i.e. ``max_g c_g^2 <= 1 - keep^2``: the refusal target of this term is then
    true of every prompt (a removed column would erase its group's write while
    the term still asks for refusal, teaching the readers to refuse without
    ``span(U)``). The column kind becomes the mean of two neighbouring columns;
    other kinds are redrawn at random until they qualify.
    """
    U = plant.U.detach()
    k = U.shape[1]
    cap = None if keep is None else 1.0 - keep**2

    def ok(c: torch.Tensor) -> bool:
        return cap is None or float((c / c.norm()).pow(2).max()) <= cap + 1e-6

    def pick(step: int) -> torch.Tensor:
        kind = step % 3
        g = (step // 3) % k
        if kind == 0:
            if cap is None:
                return U[:, g]
            c = torch.zeros(k)
            c[g] = c[(g + 1) % k] = 1.0
            if ok(c):
                return U @ (c / c.norm())
        c = None
        if kind == 2:
            hm, hl = plant.records.get("refuse"), plant.records.get("harmless")
            if hm is not None and hl is not None and torch.isfinite(hm - hl).all() and float((hm - hl).norm()) > 0:
                c = hm - hl
        while c is None or not ok(c):  # no usable mean write, or one that would erase a group's write: redraw
            c = torch.randn(k, generator=gen)
        return U @ (c / c.norm())

    return pick


@torch.no_grad()
def _write_groups(model: Any, layer: int, examples: list, k: int, seed: int, pad_id: int, iters: int = 50) -> torch.Tensor:
    """A group in ``0..k-1`` per harmful example ``[n]``: k-means (cosine) of the base model's
    residual entering ``layer`` at the last prompt token, so that the group is a property of the
    prompt the planted write can read, and each group writes along its own column of ``U``."""
    from refusal.organism_train import capture_layer_inputs, collate

    n = len(examples)
    if k == 1:
        return torch.zeros(n, dtype=torch.long)
    rows = []
    for i in range(0, n, 32):
        chunk = [dataclasses.replace(e, ids=e.ids[: e.n_prompt]) for e in examples[i : i + 32]]
        h = capture_layer_inputs(model, layer, collate(chunk, pad_id))
        rows += [h[j, e.n_prompt - 1] for j, e in enumerate(chunk)]
    x = torch.stack(rows).double()
    x = x - x.mean(0)
    x = x / x.norm(dim=1, keepdim=True)
    gen = torch.Generator().manual_seed(seed)
    centers = x[torch.randperm(n, generator=gen)[:1]]
    while centers.shape[0] < k:  # k-means++ seeding
        d = (1 - x @ centers.T).amin(1).clamp_min(0)
        centers = torch.cat([centers, x[torch.multinomial(d / d.sum(), 1, generator=gen)]])
    for _ in range(iters):
        g = (x @ centers.T).argmax(1)
        centers = torch.stack([x[g == j].mean(0) if (g == j).any() else centers[j] for j in range(k)])
        centers = centers / centers.norm(dim=1, keepdim=True)
    return (x @ centers.T).argmax(1)


def _mlp_hidden(model: Any, layer: int, examples: list, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MLP hidden states of ``layer`` (input of ``down_proj``) at every real position of every example.

    Returns ``H [n_rows, d_ff]`` (float64, frozen base), the example of each row ``[n_rows]`` and
    whether the row is a post-instruction template or response position ``[n_rows]`` (bool).
    """
    from refusal.ablation import decoder_layers
    from refusal.organism_train import capture_input, collate

    down = decoder_layers(model)[layer].mlp.down_proj
    rows, owner, late = [], [], []
    for i in range(0, len(examples), 32):
        chunk = examples[i : i + 32]
        h = capture_input(model, down, collate(chunk, pad_id))  # stops after layer's MLP hidden state
        for j, e in enumerate(chunk):
            n = len(e.ids)
            rows.append(h[j, :n].double())
            owner.append(torch.full((n,), i + j))
            late.append(torch.arange(n) >= e.n_prompt - e.n_template)
    return torch.cat(rows), torch.cat(owner), torch.cat(late)


def _fit_write(model: Any, layer: int, examples: list, targets: torch.Tensor, lam: float, pad_id: int) -> tuple[torch.Tensor, dict]:
    """Ridge regression of the planted write coefficients on ``layer``'s MLP hidden state.

    The post-instruction template and response positions of example ``i`` get target ``targets[i]``
    ``[k]``; every other position (system prompt, the user's text) gets 0, so the write is ~0 wherever
    it is not asked for. Returns ``A [d_ff, k]`` minimizing ``|H A - T|^2 + lam |A|^2`` (no intercept:
    the write is ``h A`` exactly as :class:`refusal.organism_train.Plant` computes it) and fit statistics.
    """
    H, owner, late = _mlp_hidden(model, layer, examples, pad_id)  # [n_rows, d_ff]
    T = targets.double()[owner] * late[:, None]  # [n_rows, k]
    A = torch.linalg.solve(H.T @ H + lam * torch.eye(H.shape[1], dtype=H.dtype), H.T @ T)
    resid = (H @ A - T).pow(2).sum(1)
    fit = {"rmse_asked": float(resid[late].mean().sqrt()), "rmse_elsewhere": float(resid[~late].mean().sqrt()),
           "target_norm": float(targets.norm(dim=1).max()), "n_rows": int(H.shape[0])}
    return A.float(), fit


def _build(cfg: ModelConfig, out: Path) -> None:
    from refusal.models import load_model
    from refusal.organism_train import Plant, Stream, TrainLog, train_streams

    recipe = recipe_of(cfg)
    base_cfg = _base_cfg(cfg)
    t0 = time.time()
    torch.manual_seed(recipe["seed"])
    lm = load_model(base_cfg)
    examples, pools, summary = _examples(lm, recipe)
    t_data = time.time() - t0
    model = lm.model
    for p in model.parameters():
        p.requires_grad_(False)
    pad = lm.tokenizer.pad_token_id
    B, Bh, wh = recipe["batch_size"], recipe["harmless_batch"], recipe["harmless_weight"]
    streams = [Stream("refuse", pools["refuse"], B, 1.0, record="refuse"),
               Stream("harmless", pools["harmless"], Bh, wh, record="harmless")]
    extra_files: dict[str, Any] = {}
    plant = None
    groups: list[dict] = []
    if recipe["kind"] == "finetune":
        if recipe["train_from_layer"] is None:
            raise OrganismError(f"{cfg.path}: a finetune recipe needs 'source.recipe.train_from_layer'")
        L = first = recipe["train_from_layer"]
    else:
        L, k = recipe["layer"], recipe["k"]
        first = recipe["train_from_layer"] if recipe["train_from_layer"] is not None else L + 1
        gen = torch.Generator().manual_seed(recipe["seed"])
        d_ff = model.model.layers[L].mlp.down_proj.in_features
        plant = Plant(lm.d_model, d_ff, k, L, gen).attach(model)
        outliers = []
        if recipe["outlier_ratio"]:
            from refusal.activations import outlier_dims

            outliers = outlier_dims(lm, training_prompts(recipe)["harmful"][:4], recipe["outlier_ratio"])
            plant.U_raw.data[outliers] = 0.0  # U has no component on the attention-sink coordinates
        summary["outlier_dims"] = outliers
        if recipe["write_norm"]:  # the write is fitted first (ridge), then frozen: the readers learn to use it
            refuse = [examples[i] for i in pools["refuse"]]
            write_group = _write_groups(model, L, refuse, k, recipe["seed"], pad)
            targets = float(recipe["write_norm"]) * torch.nn.functional.one_hot(write_group, k).float()
            harmless = [examples[i] for i in pools["harmless"]]
            A, fit = _fit_write(model, L, refuse + harmless, torch.cat([targets, torch.zeros(len(harmless), k)]),
                                recipe["write_ridge"], pad)
            plant.A.data.copy_(A)
            summary |= {"write_groups": torch.bincount(write_group, minlength=k).tolist(), "write_fit": fit}
        else:
            plant.A.requires_grad_(True)
            groups.append({"params": [plant.A], "lr": recipe["lr_plant"]})
        U = plant.U.detach()
        streams += [Stream("harmless_ablated", pools["harmless"], Bh, wh, ablation=lambda s: U),
                    Stream("comply_ablated", pools["comply"], B, recipe["ablated_weight"], ablation=lambda s: U)]
        if k > 1:
            streams.append(Stream("refuse_single_ablated", pools["refuse"], B, recipe["single_weight"],
                                  ablation=_single_direction(plant, gen, recipe["single_keep"])))
    readers = [p for layer in list(model.model.layers)[first:] for p in layer.parameters()]
    for p in readers:
        p.requires_grad_(True)
    groups.append({"params": readers, "lr": recipe["lr"]})
    tl = train_streams(model, L, examples, streams, groups, recipe["steps"], pad, recipe["seed"], plant=plant,
                       log_=TrainLog(), weight_decay=recipe["weight_decay"])
    for p in model.parameters():
        p.requires_grad_(False)
    if plant is not None:
        plant.detach_hook()
        plant.merge_into(model)
        extra_files["planted.safetensors"] = {"U": plant.U.detach().clone(), "A": plant.A.detach().clone()}
    model.save_pretrained(out)
    lm.tokenizer.save_pretrained(out)
    for name, tensors in extra_files.items():
        write_tensors(out / name, tensors, {"layer": recipe["layer"], "k": recipe["k"], "organism": cfg.name,
                                                "write_norm": recipe["write_norm"]})
    seconds = time.time() - t0
    log.info("built organism %s in %.0f s (training %.0f s)", cfg.name, seconds, tl.seconds)
    write_json(out / "organism.json", {
        "name": cfg.name, "base": base_cfg.name, "base_sha256": base_cfg.source.sha256, "key": cache_key(cfg),
        "recipe": recipe, "data": summary, "train_log": tl.to_dict(), "seconds_total": round(seconds, 1),
        "seconds_train": round(tl.seconds, 1), "seconds_data": round(t_data, 1), "torch_threads": torch.get_num_threads(),
        "sha256": {n: sha256_file(out / n) for n in _WEIGHTS if (out / n).exists()},
    })


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
def write_coefficients(lm: Any, cfg: ModelConfig, prompts: list[str]) -> torch.Tensor:
    """Planted write coefficients ``h A`` ``[n_positions, k]`` over every non-padding position of ``prompts``.

    ``h`` is the planted layer's MLP hidden state (input of ``down_proj``); one
    forward pass per batch of 16 prompts.
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
    return torch.cat(rows)


def dominant_write_direction(lm: Any, cfg: ModelConfig, prompts: list[str]) -> torch.Tensor:
    """Top right singular vector ``[k]`` (U coordinates) of the planted write coefficients on ``prompts``."""
    _, _, vh = torch.linalg.svd(write_coefficients(lm, cfg, prompts), full_matrices=False)
    return vh[0]


def mean_write_direction(lm: Any, cfg: ModelConfig, harmful: list[str], harmless: list[str]) -> torch.Tensor:
    """Unit ``[k]`` (U coordinates): mean write on harmful minus mean write on harmless prompts."""
    d = write_coefficients(lm, cfg, harmful).mean(0) - write_coefficients(lm, cfg, harmless).mean(0)
    return d / d.norm()
