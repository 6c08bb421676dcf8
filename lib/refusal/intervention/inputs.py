"""What the ablation stage works on: the prompt samples and the cleaned candidate directions.

Stage 04 reads stage 01's pairs, splits and evaluation prompts and stage 02's candidates. The validation pairs
choose the direction; the evaluation samples (drawn once, seeded) measure what removing it does, and never take
part in choosing it. Candidates are cleaned of the model's outlier ("massive activation") coordinates: a
candidate's weight on them, even 0.1, makes its ablation move the first token's residual (~1e3-1e4 along them)
by hundreds of units, an intervention of another kind.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from refusal.artifacts import read_json
from refusal.data import Pair
from refusal.extraction.activations import outlier_dims
from refusal.extraction.directions import Directions, read_directions
from refusal.intervention.conditions import PromptSet
from refusal.intervention.selection import drop_coordinates, selection_harmless
from refusal.models import LoadedModel
from refusal.report.stage import require_stage

__all__ = ["AblationInputs", "ablation_inputs", "eval_sample", "clean_candidates"]


@dataclass
class AblationInputs:
    """Prompt samples and candidates of stage 04 (shapes: ``L`` layers, ``P`` positions, ``d`` = d_model)."""

    train: list[Pair]
    val: list[Pair]
    val_harmless: list[str]  # harmless prompts of the selection's KL and induce filters
    harmful_eval: list[str]
    harmless_eval: list[str]
    sets: list[PromptSet]  # "eval" (the samples above, with harm categories) and, when recorded, "independent"
    candidates: Directions  # as stage 02 extracted them
    directions: torch.Tensor  # [L, P, d] unit, outlier coordinates zeroed
    diffs: torch.Tensor  # [L, P, d] raw differences, outlier coordinates zeroed
    valid: torch.Tensor  # [L, P] bool
    positions: list[int]
    outliers: list[int]  # the model's outlier coordinates
    dropped: list[int] = field(default_factory=list)  # those zeroed in the candidates

    def describe(self) -> str:
        return (f"{len(self.val)} validation pairs, {len(self.val_harmless)} harmless selection prompts, "
                f"{len(self.harmful_eval)} + {len(self.harmless_eval)} eval prompts, {int(self.valid.sum())} valid "
                f"candidates over {self.directions.shape[0]} layers x {len(self.positions)} positions; outlier "
                f"coordinates {self.outliers}{' (zeroed in the candidates)' if self.dropped else ''}")


def eval_sample(harmful_pool: list[str], harmless_pool: list[str], n_eval: int, seed: int,
                where: str | Path = "") -> tuple[list[int], list[int]]:
    """Indices of ``n_eval`` harmful and ``n_eval`` harmless evaluation prompts, drawn with ``random.Random(seed)``
    (harmful first): stage 04's evaluation sample, and the peer comparison's when it takes as many.

    Raises:
        ValueError: a pool holds fewer than ``n_eval`` prompts (naming ``where``'s file).
    """
    for name, pool in (("harmful_eval.json", harmful_pool), ("harmless_eval.json", harmless_pool)):
        if len(pool) < n_eval:
            raise ValueError(f"{Path(where) / name}: {len(pool)} prompts, fewer than n_eval = {n_eval}")
    rng = random.Random(seed)
    return rng.sample(range(len(harmful_pool)), n_eval), rng.sample(range(len(harmless_pool)), n_eval)


def ablation_inputs(model: str, lm: LoadedModel, n_val: int, n_eval: int, seed: int, harmless_val: str,
                    exclude_outliers: bool, n_independent: int = 0) -> AblationInputs:
    """Read stages 01-02 of ``model`` and draw the samples of stage 04.

    The first ``n_val`` validation pairs; ``n_eval`` harmful and ``n_eval`` harmless evaluation prompts drawn with
    ``random.Random(seed)`` (harmful first); the selection's harmless prompts by ``harmless_val``
    (:func:`refusal.intervention.selection.selection_harmless`); the independent set's first ``n_independent``
    prompts per side (0: all), when stage 01 recorded it.
    """
    data_dir, extract_dir = require_stage(model, "01_data"), require_stage(model, "02_extract")
    pairs = [tuple(p) for p in read_json(data_dir / "pairs.json")]
    splits = read_json(data_dir / "splits.json")
    harmful_pool, harmless_pool = read_json(data_dir / "harmful_eval.json"), read_json(data_dir / "harmless_eval.json")
    h_idx, s_idx = eval_sample(harmful_pool, harmless_pool, n_eval, seed, data_dir)
    harmful_eval, harmless_eval = [harmful_pool[i] for i in h_idx], [harmless_pool[i] for i in s_idx]
    cat_file = data_dir / "harmful_eval_categories.json"
    categories = read_json(cat_file) if cat_file.exists() else ["unknown"] * len(harmful_pool)
    sets = [PromptSet("eval", harmful_eval, harmless_eval, [categories[i] for i in h_idx])]
    if (data_dir / "independent.json").exists():
        ind = read_json(data_dir / "independent.json")
        r2 = random.Random(seed + 1)
        hi = sorted(r2.sample(range(len(ind["harmful"])), min(n_independent or 10**9, len(ind["harmful"]))))
        si = sorted(r2.sample(range(len(ind["harmless"])), min(n_independent or 10**9, len(ind["harmless"]))))
        sets.append(PromptSet("independent", [ind["harmful"][i] for i in hi], [ind["harmless"][i] for i in si],
                              [ind["meta"]["harmful"][i]["category"] for i in hi]))
    val = [pairs[i] for i in splits["val"]][:n_val]
    cands = read_directions(extract_dir / "directions.safetensors")
    outliers = outlier_dims(lm)
    dropped = outliers if exclude_outliers else []
    directions, diffs, valid = clean_candidates(cands, dropped)
    return AblationInputs(
        train=[pairs[i] for i in splits["train"]], val=val,
        val_harmless=selection_harmless(harmless_val, val, harmless_pool, harmless_eval),
        harmful_eval=harmful_eval, harmless_eval=harmless_eval, sets=sets, candidates=cands, directions=directions,
        diffs=diffs, valid=valid, positions=list(cands.meta["positions"]), outliers=outliers, dropped=dropped)


def clean_candidates(cands: Directions, dropped: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The candidates with the coordinates ``dropped`` zeroed: unit directions ``[L, P, d]`` (re-normalized), raw
    differences ``[L, P, d]`` and validity ``[L, P]`` (a candidate that was mostly outlier coordinates is invalid)."""
    directions = drop_coordinates(cands.directions, dropped, renormalize=True)
    return (directions, drop_coordinates(cands.diff, dropped, renormalize=False),
            cands.valid & (directions.norm(dim=-1) > 0.5))
