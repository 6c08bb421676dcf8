"""The two weight edits built from this library: this project's (stages 02-05) and single-layer abliteration.

Both remove one unit direction with :func:`refusal.intervention.orthogonalize.orthogonalize` (embedding, every
attention-output and MLP-output matrix); they differ in how the direction is found and chosen.

- :func:`build_ours`: stage 02's candidates (difference of means at every layer's input and every
  post-instruction template position, on the train pairs), cleaned of the model's outlier coordinates, scored and
  selected as stage 04 does (Arditi et al.: bypass, induce and first-token KL on the validation pairs; prescreen;
  KL bound from random directions), with stage 04's parameters as the notebook declares them.
- :func:`build_single_layer`: the FailSpy / mlabonne recipe: the last prompt token's difference of means at each
  layer's input, each layer's direction removed in turn while the model answers the validation harmful prompts,
  and the layer that leaves the fewest refusals kept (ties: the more coherent answers, then the earlier layer), as
  a user of those notebooks picks it by reading the generations; here the project's offline detector reads them.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from refusal import data as D
from refusal.evaluation import judge as J
from refusal.extraction.activations import collect, outlier_dims
from refusal.extraction.directions import diff_of_means, extract_directions
from refusal.intervention.ablation import ablate
from refusal.intervention.conditions import PromptSet, condition_rates, run_condition
from refusal.intervention.inputs import clean_candidates
from refusal.intervention.orthogonalize import OrthoResult, orthogonalize
from refusal.intervention.scoring import refusal_tokens
from refusal.intervention.selection import SelectionCriteria, score_candidates, select, selection_harmless
from refusal.models import LoadedModel, fresh_copy
from refusal.peers.inputs import PeerInputs, stage_params

__all__ = ["Built", "offline_judge", "build_ours", "scan_layers", "pick_layer", "build_single_layer"]

log = logging.getLogger(__name__)


class Built:
    """An edited model (an un-bridged HF model, not yet saved), its orthogonalization result, a JSON record, the
    model card's fields and the removed unit direction ``[d_model]``."""

    def __init__(self, model: Any, result: OrthoResult, record: dict[str, Any], info: dict[str, Any],
                 direction: torch.Tensor) -> None:
        self.model, self.result, self.record, self.info, self.direction = model, result, record, info, direction


def offline_judge(prompts: list[str], responses: list[str]) -> pd.DataFrame:
    """The project's offline refusal detector, as every method of the comparison is judged."""
    return J.score(prompts, responses, judge="offline", progress=False)


def build_ours(lm: LoadedModel, inputs: PeerInputs) -> Built:
    """Stages 02, 04 (selection only) and 05 with their notebooks' parameters, on ``inputs``' train and val pairs."""
    cfg = lm.cfg
    p02, p04, p05 = (stage_params(cfg, s) for s in ("02_extract", "04_ablate", "05_orthogonalize"))
    train_h, train_s = [h for h, _ in inputs.train], [s for _, s in inputs.train]
    cands, _, _ = extract_directions(lm.model, lm, train_h, train_s, hook=p02["hook"], batch_size=p02["batch_size"])
    outliers = outlier_dims(lm)
    dropped = outliers if p04["exclude_outliers"] else []
    directions, diffs, valid = clean_candidates(cands, dropped)
    positions = list(cands.meta["positions"])
    tokens, token_record = refusal_tokens(lm, train_h[:32], J.is_refusal, fallback=D.default_refusals())
    val_h = [h for h, _ in inputs.val]
    # "twins" (stage 04's default): the safe twins; "generic": harmless eval prompts outside the comparison's sample
    val_ok = selection_harmless(p04["harmless_val"], inputs.val, D.default_harmless_eval(), inputs.harmless_eval)
    criteria = SelectionCriteria(p04["late_cutoff"], p04["kl_max"], p04["induce_min"], p04["kl_floor_factor"] or None)
    scores = score_candidates(lm, directions, diffs, valid, positions, val_h, val_ok, tokens, criteria,
                              prescreen=p04["prescreen"] or None, prescreen_prompts=p04["prescreen_prompts"],
                              exclude=outliers)
    best, note = select(scores)
    layer, pos_index = int(best.layer), int(best.pos_index)
    edited = fresh_copy(lm)
    alpha = 1.0 if p05["alpha"] is None else float(p05["alpha"])
    res = orthogonalize(edited, directions[layer, pos_index], alpha=alpha, norm_preserving=p05["norm_preserving"])
    record = {"layer": layer, "position": positions[pos_index], "bypass": float(best.bypass),
              "induce": float(best.induce), "kl": float(best.kl), "selection_note": note,
              "kl_floor": scores.attrs["kl_floor"], "kl_max_used": scores.attrs["kl_max_used"],
              "baseline_bypass": scores.attrs["baseline_harmful"], "outlier_dims_zeroed": dropped,
              "n_candidates": int(valid.sum()), "n_fully_scored": int(scores.bypass.notna().sum()),
              "refusal_tokens": token_record, "alpha": alpha, "norm_preserving": p05["norm_preserving"],
              "criteria": scores.attrs["criteria"], "prescreen": p04["prescreen"], "hook": p02["hook"]}
    info = {"model_id": cfg.model_id, "layer": layer, "position": positions[pos_index], "basis": "selected", "k": 1,
            "source": "this project: difference of means at every layer and template position, selected on "
                      "validation pairs by bypass / induce / KL (Arditi et al.)"}
    return Built(edited, res, record, info, directions[layer, pos_index])


def scan_layers(lm: LoadedModel, directions: torch.Tensor, valid: torch.Tensor, prompts: list[str],
                max_new_tokens: int) -> pd.DataFrame:
    """Refusal left on ``prompts`` (harmful) with each layer's direction removed at every read of the stream.

    Args:
        directions: ``[n_layers, d_model]`` unit vectors; ``valid``: ``[n_layers]`` bool (invalid layers skipped).

    Returns:
        one row per valid layer: layer, n, refusal (+ Wilson _low, _high), mean_coherence, mean_compliance.
    """
    rows = []
    val = [PromptSet("val", prompts, [])]
    for layer in tqdm([l for l in range(directions.shape[0]) if bool(valid[l])], desc="single-layer scan"):
        v = directions[layer]
        t = run_condition(lm, f"layer {layer}", [lambda v=v: ablate(lm.model, v)], val, offline_judge,
                          max_new_tokens, sides=("harmful",))
        r = condition_rates(t).iloc[0]
        rows.append({"layer": layer, "n": int(r.n), "refusal": r.refusal, "refusal_low": r.refusal_low,
                     "refusal_high": r.refusal_high, "mean_coherence": r.mean_coherence,
                     "mean_compliance": r.mean_compliance})
    return pd.DataFrame(rows)


def pick_layer(scan: pd.DataFrame) -> int:
    """The layer with the fewest refusals; ties: the higher mean coherence, then the earlier layer."""
    if scan.empty:
        raise ValueError("single-layer scan: no valid layer to choose from")
    best = scan.sort_values(["refusal", "mean_coherence", "layer"], ascending=[True, False, True]).iloc[0]
    return int(best.layer)


def build_single_layer(lm: LoadedModel, inputs: PeerInputs, max_new_tokens: int) -> Built:
    """Last-token difference of means per layer on the train pairs, the best layer by the scan, orthogonalized."""
    p02 = stage_params(lm.cfg, "02_extract")
    kw = dict(positions=[-1], hook="resid_pre", batch_size=p02["batch_size"])
    h = collect(lm.model, lm, [p[0] for p in inputs.train], desc="train harmful", **kw)
    s = collect(lm.model, lm, [p[1] for p in inputs.train], desc="train safe", **kw)
    cands = diff_of_means(h.mean, s.mean)  # [L, 1, d]
    directions, valid = cands.directions[:, 0], cands.valid[:, 0]
    scan = scan_layers(lm, directions, valid, [p[0] for p in inputs.val], max_new_tokens)
    layer = pick_layer(scan)
    edited = fresh_copy(lm)
    res = orthogonalize(edited, directions[layer])
    record = {"layer": layer, "position": -1, "scan": scan.to_dict(orient="records"),
              "direction_norm": float(cands.norm[layer, 0]), "hook": "resid_pre"}
    info = {"model_id": lm.cfg.model_id, "layer": layer, "position": -1, "basis": "single-layer", "k": 1,
            "source": "single-layer abliteration (FailSpy / mlabonne): last-token difference of means, the layer "
                      "whose removal leaves the fewest refusals on the validation prompts"}
    return Built(edited, res, record, info, directions[layer])
