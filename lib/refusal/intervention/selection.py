"""Direction selection over (layer, position) candidates, and the refusal-rank sweep.

Selection follows Arditi et al. (2024) on a validation split:

- **bypass**: mean refusal score on harmful prompts with the candidate ablated
  at every layer input and the final norm (lower = refusal removed);
- **induce**: mean refusal score on harmless prompts with the candidate's raw
  mean difference added at its own layer (higher = the direction causes refusal);
- **KL**: mean KL(base || ablated) of the first-token distribution on
  harmless prompts (lower = ablation harmless).

Filters (parameters): drop the last ``late_cutoff`` fraction of layers,
``KL > kl_max``, ``induce < induce_min``; the lowest bypass wins.

Two additions to the published recipe, both parameters:

- ``kl_floor_factor``: the KL bound is ``max(kl_max, kl_floor_factor x KL
  floor)``, where the floor is the mean KL caused by ablating a few random
  unit directions (:func:`refusal.extraction.directions.random_direction`) on the same
  prompts. ``kl_max = 0.1`` was set for 2B-8B chat models, whose
  first-token distribution a random ablation barely moves; a 135M model's
  moves by 0.03-0.06 nats, and 0.1 then rejects real refusal directions.
  On a model whose floor is below ``kl_max / kl_floor_factor`` the bound is
  the published one.
- candidates are cleaned of the model's outlier ("massive activation")
  coordinates (:func:`drop_coordinates`, done by the caller): a
  difference-of-means direction with a weight of only 0.27 on SmolLM2's
  coordinate 507 (~2.5e4 on the first token) moves that token by thousands of
  units when ablated, and wrecks the model (measured KL 8.4 -> 0.1 once zeroed).

The original study's rule (generate, judge, rank by mean compliance x
coherence over a layer x alpha grid) is :func:`judge_grid`.

The rank sweep and the verdict that read the selected direction's neighbourhood are
:mod:`refusal.intervention.rank`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Callable

import pandas as pd
import torch
from tqdm.auto import tqdm

from refusal.extraction.directions import random_direction
from refusal.intervention.ablation import ablate, add_direction
from refusal.generation import generate
from refusal.models import LoadedModel
from refusal.intervention.scoring import kl_last, last_logprobs, mean_first_token_kl, refusal_score

__all__ = [
    "SelectionCriteria",
    "drop_coordinates",
    "selection_harmless",
    "kl_floor",
    "score_candidates",
    "select",
    "judge_grid",
]

log = logging.getLogger(__name__)

# A judge: (prompts, responses) -> DataFrame with columns compliance, coherence (0 / 0.5 / 1).
JudgeFn = Callable[[list[str], list[str]], pd.DataFrame]


@dataclass(frozen=True)
class SelectionCriteria:
    """Filters of the selection (Arditi et al. defaults)."""

    late_cutoff: float = 0.2  # drop candidates in the last 20% of layers
    kl_max: float = 0.1  # drop candidates whose ablation moves harmless first-token KL above this
    induce_min: float = 0.0  # drop candidates whose addition does not push harmless refusal score above this
    kl_floor_factor: float | None = 10.0  # KL bound: max(kl_max, this x the random-direction KL floor); None: kl_max
    n_random: int = 3  # random directions averaged for the KL floor


def selection_harmless(mode: str, val_pairs: list[tuple[str, str]], harmless_pool: list[str],
                       held_out: list[str]) -> list[str]:
    """Harmless prompts for the selection's KL and induce filters, one per validation pair.

    ``mode="twins"``: the safe twins of ``val_pairs``; ``mode="generic"``: the first
    ``len(val_pairs)`` prompts of ``harmless_pool`` that are not in ``held_out`` (the
    evaluation sample, which must not take part in choosing the direction), as Arditi et al.
    """
    if mode == "twins":
        return [s for _, s in val_pairs]
    if mode != "generic":
        raise ValueError(f"harmless_val must be 'generic' or 'twins', got {mode!r}")
    excluded = set(held_out)
    picked = [p for p in harmless_pool if p not in excluded][: len(val_pairs)]
    if len(picked) < len(val_pairs):
        raise ValueError(f"harmless_val='generic': only {len(picked)} harmless prompts outside the eval sample "
                         f"for {len(val_pairs)} validation pairs")
    return picked


def drop_coordinates(x: torch.Tensor, coords: list[int], renormalize: bool) -> torch.Tensor:
    """A copy of ``x [..., d_model]`` with the coordinates ``coords`` set to 0 (rows re-normalized if asked)."""
    y = x.clone()
    if coords:
        y[..., list(coords)] = 0.0
        if renormalize:
            n = y.norm(dim=-1, keepdim=True)
            y = torch.where(n > 0, y / n.clamp_min(1e-12), y)
    return y


def kl_floor(lm: LoadedModel, harmless: list[str], exclude: list[int], n: int = 3,
             base: torch.Tensor | None = None) -> float:
    """Mean first-token KL on ``harmless`` under ablation of ``n`` seeded random unit directions (zero on ``exclude``)."""
    base = last_logprobs(lm, harmless) if base is None else base
    kls = []
    for seed in range(n):
        with ablate(lm.model, random_direction(lm.d_model, 1000 + seed, exclude)):
            kls.append(mean_first_token_kl(lm, base, harmless))
    return float(sum(kls) / len(kls))


def score_candidates(
    lm: LoadedModel,
    directions: torch.Tensor,
    diffs: torch.Tensor,
    valid: torch.Tensor,
    positions: list[int],
    harmful: list[str],
    harmless: list[str],
    tokens: list[int],
    criteria: SelectionCriteria = SelectionCriteria(),
    prescreen: int | None = 16,
    prescreen_prompts: int = 8,
    exclude: list[int] | None = None,
) -> pd.DataFrame:
    """Bypass, induce and KL for the valid candidates before the late-layer cutoff.

    Scoring every candidate on every validation prompt costs three forward
    passes per candidate; on 2 CPU cores that is too slow for hundreds of
    candidates. With ``prescreen``, a first pass computes the bypass score and the
    harmless KL of every candidate on the first ``prescreen_prompts`` prompts of
    each kind, and only the ``prescreen`` best get the full bypass / induce / KL
    scores on all validation prompts (lowest bypass first among those within
    ``kl_max``, then the rest: a low bypass that wrecks the model is no candidate). ``prescreen=None`` scores every candidate fully.

    Args:
        directions: unit candidates ``[n_layers, n_pos, d_model]``.
        diffs: raw mean differences ``[n_layers, n_pos, d_model]`` (added for *induce*).
        valid: ``[n_layers, n_pos]`` bool; invalid (degenerate) candidates are skipped.
        positions: token offset of each position index (``-1`` = last token).
        harmful, harmless: validation prompts.
        tokens: refusal-starting token ids (:func:`refusal.intervention.scoring.refusal_tokens`).
        exclude: coordinates on which the random directions of the KL floor are zero (the model's outliers).

    Returns:
        One row per (layer, position): layer, pos_index, position, bypass_screen,
        bypass, induce, kl, and ``filtered`` (why a candidate is excluded:
        "late layer", "prescreen", "kl", "induce", or "" if kept). ``attrs`` hold the
        baseline refusal scores, the criteria, the KL floor and the KL bound used.
    """
    n_layers = directions.shape[0]
    max_layer = int(n_layers * (1 - criteria.late_cutoff))
    cands = [(l, p) for l in range(n_layers) for p in range(len(positions)) if bool(valid[l, p])]
    rows = {c: {"layer": c[0], "pos_index": c[1], "position": positions[c[1]], "bypass_screen": float("nan"),
                "kl_screen": float("nan"), "bypass": float("nan"), "induce": float("nan"), "kl": float("nan"),
                "filtered": ""} for c in cands}
    early = [c for c in cands if c[0] < max_layer]
    for c in cands:
        if c[0] >= max_layer:
            rows[c]["filtered"] = "late layer"
    full = early
    base_harmless = last_logprobs(lm, harmless)
    floor = kl_floor(lm, harmless, list(exclude or []), criteria.n_random, base_harmless)
    kl_max = criteria.kl_max if criteria.kl_floor_factor is None else max(criteria.kl_max, criteria.kl_floor_factor * floor)
    log.info("KL floor (random directions) %.4f: KL bound %.3f", floor, kl_max)
    if prescreen is not None and len(early) > prescreen:
        screen, screen_ok = harmful[:prescreen_prompts], harmless[:prescreen_prompts]
        for l, p in tqdm(early, desc="prescreen (bypass, KL)"):
            with ablate(lm.model, directions[l, p]):  # one pass over both kinds: one shared-prefix pass
                lp = last_logprobs(lm, screen + screen_ok)
            rows[(l, p)]["bypass_screen"] = refusal_score(lp[: len(screen)], tokens).mean().item()
            rows[(l, p)]["kl_screen"] = kl_last(base_harmless[: len(screen_ok)], lp[len(screen):]).mean().item()
        # a low bypass bought by wrecking the model is no candidate: rank those within the KL bound first
        full = sorted(early, key=lambda c: (rows[c]["kl_screen"] > kl_max, rows[c]["bypass_screen"]))[:prescreen]
        for c in early:
            if c not in full:
                rows[c]["filtered"] = "prescreen"
    base_harmful = last_logprobs(lm, harmful)
    for l, p in tqdm(full, desc="candidates"):
        with ablate(lm.model, directions[l, p]):
            bypass = refusal_score(last_logprobs(lm, harmful), tokens).mean().item()
            kl = mean_first_token_kl(lm, base_harmless, harmless)
        with add_direction(lm.model, diffs[l, p], coeff=1.0, layers=[l]):
            induce = refusal_score(last_logprobs(lm, harmless), tokens).mean().item()
        why = "kl" if kl > kl_max else ("induce" if induce < criteria.induce_min else "")
        rows[(l, p)].update(bypass=bypass, induce=induce, kl=kl, filtered=why)
    df = pd.DataFrame(list(rows.values()))
    df.attrs["baseline_harmful"] = refusal_score(base_harmful, tokens).mean().item()
    df.attrs["baseline_harmless"] = refusal_score(base_harmless, tokens).mean().item()
    df.attrs["criteria"] = asdict(criteria)
    df.attrs["kl_floor"] = floor
    df.attrs["kl_max_used"] = kl_max
    return df


def select(scores: pd.DataFrame, strict: bool = False) -> tuple[pd.Series, str]:
    """The candidate with the lowest bypass among those not filtered.

    If every fully scored candidate is filtered (e.g. a model that barely
    refuses, where every ablation moves KL), the KL bound is doubled until a
    fully scored candidate passes it and the induce filter (then, if none
    does, the induce filter is dropped), and the lowest bypass among those is
    returned with a note saying so, unless ``strict``. A candidate that wrecks
    the model (a huge KL) is therefore never chosen for its low bypass.

    Returns:
        (the selected row, a note: "" or how the filters were relaxed).

    Raises:
        ValueError: nothing was scored, or ``strict`` and every candidate was filtered.
    """
    kept = scores[scores["filtered"] == ""]
    if not kept.empty:
        return kept.sort_values("bypass").iloc[0], ""
    counts = scores["filtered"].value_counts().to_dict()
    scored = scores[scores["bypass"].notna()]
    if strict or scored.empty:
        raise ValueError(f"no candidate passes the selection filters ({counts}); relax kl_max / induce_min")
    crit = scores.attrs.get("criteria", {})
    bound = float(scores.attrs.get("kl_max_used", crit.get("kl_max", 0.1)))
    induce_ok = scored["induce"] >= crit.get("induce_min", 0.0)
    for use_induce in (True, False):
        b = bound
        while b <= max(bound, float(scored["kl"].max())) * 2:
            ok = scored[(scored["kl"] <= b) & (induce_ok if use_induce else True)]
            if not ok.empty:
                note = (f"no candidate passed the filters ({counts}): KL bound relaxed from {bound:.3g} to {b:.3g}"
                        f"{'' if use_induce else ' and the induce filter dropped'}; the lowest bypass within it is used")
                log.warning(note)
                return ok.sort_values("bypass").iloc[0], note
            b *= 2
    raise AssertionError("unreachable: the largest KL bound admits every scored candidate")


def judge_grid(
    lm: LoadedModel,
    directions: torch.Tensor,
    candidates: list[tuple[int, int]],
    alphas: list[float],
    prompts: list[str],
    judge: JudgeFn,
    max_new_tokens: int,
) -> pd.DataFrame:
    """The original study's rule: generate under ablation, judge, rank by mean(compliance x coherence).

    Returns one row per (layer, pos_index, alpha) with compliance, coherence,
    score = mean(compliance * coherence), and n.
    """
    rows = []
    for (l, p) in tqdm(candidates, desc="judge grid"):
        for a in alphas:
            with ablate(lm.model, directions[l, p], alpha=a):
                outs = generate(lm, prompts, max_new_tokens=max_new_tokens, progress=False)
            j = judge(prompts, outs)
            s = j[~j["unscored"].astype(bool)]  # unscored items are left out of the means, and counted
            rows.append({"layer": l, "pos_index": p, "alpha": a, "compliance": s["compliance"].mean(),
                         "coherence": s["coherence"].mean(), "score": (s["compliance"] * s["coherence"]).mean(),
                         "n": len(s), "n_unscored": len(j) - len(s)})
    return pd.DataFrame(rows).sort_values("score", ascending=False, ignore_index=True)
