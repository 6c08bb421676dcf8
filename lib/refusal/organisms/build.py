"""Building an organism: training data, the planted write, training the readers, saving a checked cache entry.

:func:`build` is the explicit step (stage 00, ``python -m refusal.organisms build <name>``): it returns the verified
cache entry, building it first when it is missing or corrupt. What the recipes mean is described in
:mod:`refusal.organisms`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from refusal import data as D
from refusal.artifacts import sha256_file, write_json, write_tensors
from refusal.config import ModelConfig
from refusal.evaluation.judge.offline import is_refusal
from refusal.extraction.activations import outlier_dims, template_positions
from refusal.families import decoder_layers
from refusal.models import load_model, uses_chat_template
from refusal.organisms.distill import DISTILL_TOKENS, distill
from refusal.organisms.recipe import (OrganismError, base_cfg, cache_key, distill_prompts, entry_dir, recipe_of,
                                      training_prompts, verify_entry, written_answers)
from refusal.organisms.train import (Example, Plant, Stream, TrainLog, batch_module_input, capture_layer_inputs, collate,
                                     train_streams)

__all__ = ["build", "WEIGHTS"]

log = logging.getLogger(__name__)
WEIGHTS = ("model.safetensors", "planted.safetensors")


def build(cfg: ModelConfig) -> Path:
    """The HF checkpoint folder of organism ``cfg``, building it (once) if missing or corrupt."""
    if cfg.source.kind != "organism":
        raise OrganismError(f"{cfg.path}: source.kind is '{cfg.source.kind}', not 'organism'")
    out = entry_dir(cfg)
    if verify_entry(out):
        return out
    tmp = out.with_name(out.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    _build(cfg, tmp)  # organism.json, with the weights' checksums, is written last
    shutil.rmtree(out, ignore_errors=True)
    try:
        os.replace(tmp, out)
    except OSError:  # another process has just put a complete entry there: keep it
        if not verify_entry(out):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- training data


def _examples(base_lm: Any, recipe: dict[str, Any]) -> tuple[list, dict[str, list[int]], dict[str, Any]]:
    """Training examples, the pools of the loss terms (indices into the examples) and a summary.

    Pools: ``refuse`` (harmful prompt -> a refusal, wording drawn from
    :func:`refusal.data.default_refusals`), ``comply`` (harmful prompt -> the base
    model's own answer; planted organisms learn it with span(U) removed) and
    ``harmless`` (safe twins and generic harmless prompts -> the base model's
    own answer). Base answers that read as refusals are dropped (they would
    teach over-refusal, or refusal without span(U)).
    """
    tok = base_lm.tokenizer
    eot = tok.convert_tokens_to_ids(base_lm.cfg.eot_tokens[0]) if base_lm.cfg.eot_tokens else tok.eos_token_id
    prompts = training_prompts(recipe)
    rng = random.Random(recipe["seed"])
    styles = D.default_refusals()
    n_resp = recipe["response_tokens"]
    harmless = prompts["safe"] + prompts["extra"]
    n_tpl = len(template_positions(base_lm).positions)
    if recipe["answers"] == "written":  # a base model that cannot answer yet learns the project's written answers
        written = written_answers()
        answers = [written[p] for p in harmless]
    else:  # distilled at a fixed length (one shared per-prompt cache), then cut to n_resp tokens below
        n_tokens, asked = distill_prompts(recipe)
        answers = distill(base_lm, asked, n_tokens)
    plain = not uses_chat_template(tok, base_lm.cfg)  # "User: ...\nAssistant:" format: the response follows a space

    def make(prompt: str, response: str, kind: str) -> Example:
        p_ids = tok(base_lm.chat([prompt])[0], add_special_tokens=False)["input_ids"]
        r_ids = tok((" " + response.lstrip()) if plain else response, add_special_tokens=False)["input_ids"]
        if len(r_ids) < min(n_resp, DISTILL_TOKENS) or recipe["answers"] == "written":  # a complete answer ends its turn
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
    down = decoder_layers(model)[layer].mlp.down_proj
    rows, owner, late = [], [], []
    for i in range(0, len(examples), 32):
        chunk = examples[i : i + 32]
        h = batch_module_input(model, down, collate(chunk, pad_id))  # stops after layer's MLP hidden state
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
    the write is ``h A`` exactly as :class:`refusal.organisms.train.Plant` computes it) and fit statistics.
    """
    H, owner, late = _mlp_hidden(model, layer, examples, pad_id)  # [n_rows, d_ff]
    T = targets.double()[owner] * late[:, None]  # [n_rows, k]
    A = torch.linalg.solve(H.T @ H + lam * torch.eye(H.shape[1], dtype=H.dtype), H.T @ T)
    resid = (H @ A - T).pow(2).sum(1)
    fit = {"rmse_asked": float(resid[late].mean().sqrt()), "rmse_elsewhere": float(resid[~late].mean().sqrt()),
           "target_norm": float(targets.norm(dim=1).max()), "n_rows": int(H.shape[0])}
    return A.float(), fit


def _build(cfg: ModelConfig, out: Path) -> None:
    recipe = recipe_of(cfg)
    base = base_cfg(cfg)
    t0 = time.time()
    torch.manual_seed(recipe["seed"])
    lm = load_model(base, dtype=base.dtype)  # the dtype in the cache key, never a CPU's faster cpu_dtype
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
        d_ff = decoder_layers(model)[L].mlp.down_proj.in_features
        plant = Plant(lm.d_model, d_ff, k, L, gen).attach(model)
        outliers = []
        if recipe["outlier_ratio"]:
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
    readers = [p for layer in list(decoder_layers(model))[first:] for p in layer.parameters()]
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
        "name": cfg.name, "base": base.name, "base_sha256": base.source.sha256, "key": cache_key(cfg),
        "recipe": recipe, "data": summary, "train_log": tl.to_dict(), "seconds_total": round(seconds, 1),
        "seconds_train": round(tl.seconds, 1), "seconds_data": round(t_data, 1), "torch_threads": torch.get_num_threads(),
        "sha256": {n: sha256_file(out / n) for n in WEIGHTS if (out / n).exists()},
    })
