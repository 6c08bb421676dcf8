"""Candidate refusal directions: normalized difference of means per (layer, position).

Artifact contract of stage 02 (``runs/<model>/02_extract/directions.safetensors``), read by
03_separability, 04_ablate and later stages through :func:`read_directions`:

tensors (``L`` = number of layers, ``P`` = number of positions, ``d`` = d_model)
    ``directions`` ``[L, P, d]`` float32: unit ``diff / |diff|``; zeros where invalid.
    ``diff``       ``[L, P, d]`` float32: raw ``mean_harmful - mean_safe``.
    ``mean_harmful``, ``mean_safe`` ``[L, P, d]`` float32 (from float64 accumulators).
    ``valid``      ``[L, P]`` bool: False where the difference is degenerate (zero), e.g.
                   layer 0 at a fixed template token, where every prompt has the same
                   embedding. Never NaN.
meta (JSON in the safetensors header)
    ``positions`` ``[-P, ..., -1]`` (negative offsets from the prompt's end),
    ``position_tokens`` (the template tokens at those positions), ``layers`` ``[0..L-1]``,
    ``hook`` (``resid_pre`` by default), ``split`` (``train``), ``n_harmful``, ``n_safe``,
    ``model``.

Stage 02 also writes ``projections.safetensors``: ``{split}_{harmful|safe}`` ``[n_pairs, L, P]``
float32 projections onto the train directions (``train`` in-sample, ``test`` held out; meta
``index`` = the pair indices of each split, in row order), and ``batched_vs_sequential.json``
(``cosine`` ``[L][P]`` between batched and sequential directions on a subset, null where
invalid; ``min_cosine_per_layer``; ``min_cosine``). Stage 03 writes ``separability.csv``,
``best_candidate.json`` (``layer``, ``pos_index``, ``position`` by held-out d) and
``cross_layer.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from refusal.artifacts import read_tensors, write_tensors

__all__ = ["Directions", "diff_of_means", "extract_directions", "write_directions", "read_directions", "DEGENERATE_RTOL"]

# A difference whose norm is below this fraction of the means' norms is treated as zero.
DEGENERATE_RTOL = 1e-6


@dataclass
class Directions:
    """Difference-of-means candidates; shapes as in the module docstring."""

    directions: torch.Tensor  # [L, P, d] float32, unit or zero
    diff: torch.Tensor  # [L, P, d] float32
    mean_harmful: torch.Tensor  # [L, P, d] float32
    mean_safe: torch.Tensor  # [L, P, d] float32
    valid: torch.Tensor  # [L, P] bool
    meta: dict[str, Any]

    @property
    def norm(self) -> torch.Tensor:
        """``[L, P]`` norm of the raw difference."""
        return self.diff.norm(dim=-1)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"directions": self.directions, "diff": self.diff, "mean_harmful": self.mean_harmful,
                "mean_safe": self.mean_safe, "valid": self.valid}


def diff_of_means(mean_harmful: torch.Tensor, mean_safe: torch.Tensor, meta: dict[str, Any] | None = None,
                  rtol: float = DEGENERATE_RTOL) -> Directions:
    """Normalized difference of means, harmful minus safe, per (layer, position).

    Args:
        mean_harmful, mean_safe: ``[L, P, d]`` (float64 preferred; computed in float64).
        rtol: a candidate is degenerate (``valid=False``, direction zero) when
            ``|diff| <= rtol * (|mean_harmful| + |mean_safe|)`` (or not finite).
    """
    if mean_harmful.shape != mean_safe.shape or mean_harmful.ndim != 3:
        raise ValueError(f"means must both be [L, P, d], got {tuple(mean_harmful.shape)} and {tuple(mean_safe.shape)}")
    mh, ms = mean_harmful.to(torch.float64), mean_safe.to(torch.float64)
    diff = mh - ms
    norm = diff.norm(dim=-1)
    scale = mh.norm(dim=-1) + ms.norm(dim=-1)
    valid = torch.isfinite(norm) & (norm > rtol * scale) & (norm > 0)
    unit = torch.where(valid[..., None], diff / norm.clamp_min(1e-300)[..., None], torch.zeros_like(diff))
    return Directions(directions=unit.float(), diff=torch.nan_to_num(diff).float(), mean_harmful=mh.float(),
                      mean_safe=ms.float(), valid=valid, meta=dict(meta or {}))


def write_directions(path: str | Path, dirs: Directions) -> Path:
    """Write the stage-02 contract file (atomically)."""
    if not torch.isfinite(dirs.directions).all():
        raise ValueError("directions contain NaN/inf; degenerate candidates must be zeros with valid=False")
    return write_tensors(path, dirs.tensors(), dirs.meta)


def read_directions(path: str | Path) -> Directions:
    """Read and check a ``directions.safetensors`` file (shapes, unit norms, meta keys)."""
    t, meta = read_tensors(path)
    missing = {"directions", "diff", "mean_harmful", "mean_safe", "valid"} - set(t)
    if missing:
        raise ValueError(f"{path}: missing tensors {sorted(missing)}")
    missing_meta = {"positions", "layers", "hook", "split"} - set(meta)
    if missing_meta:
        raise ValueError(f"{path}: meta lacks {sorted(missing_meta)}")
    L, P, _ = t["directions"].shape
    if tuple(t["valid"].shape) != (L, P) or len(meta["positions"]) != P or len(meta["layers"]) != L:
        raise ValueError(f"{path}: shapes disagree: directions {tuple(t['directions'].shape)}, valid "
                         f"{tuple(t['valid'].shape)}, {len(meta['layers'])} layers, {len(meta['positions'])} positions")
    n = t["directions"].norm(dim=-1)
    v = t["valid"].bool()
    if not torch.allclose(n[v], torch.ones_like(n[v]), atol=1e-4) or (n[~v] != 0).any():
        raise ValueError(f"{path}: directions are not unit where valid and zero elsewhere")
    return Directions(directions=t["directions"], diff=t["diff"], mean_harmful=t["mean_harmful"],
                      mean_safe=t["mean_safe"], valid=v, meta=meta)


def extract_directions(model: Any, lm: Any, harmful: list[str], safe: list[str], hook: str = "resid_pre",
                       mode: str = "batched", batch_size: int | None = None, keep: torch.dtype | None = None,
                       split: str = "train", progress: bool = True) -> tuple[Directions, torch.Tensor | None, torch.Tensor | None]:
    """Difference-of-means candidates at every layer and post-instruction position.

    Streams ``harmful`` and ``safe`` through :func:`refusal.activations.collect` (float64
    sums). With ``keep`` (opt-in, e.g. ``torch.float16``), the activations at the
    selected positions are kept for the duration of this call only, so that the
    in-sample projections onto the new directions come from the same forward pass;
    they are returned as ``[n_harmful, L, P]`` and ``[n_safe, L, P]`` (else ``None``).

    Returns:
        (directions with the contract's meta, harmful projections, safe projections).
    """
    from refusal.activations import collect, project, template_positions

    tp = template_positions(lm)
    kw = dict(positions=tp.positions, hook=hook, mode=mode, batch_size=batch_size, keep=keep,
              expect_tail=tp.token_ids, progress=progress)
    h = collect(model, lm, harmful, desc=f"{split} harmful", **kw)
    s = collect(model, lm, safe, desc=f"{split} safe", **kw)
    meta = {"positions": tp.positions, "position_tokens": tp.tokens, "position_token_ids": tp.token_ids,
            "layers": h.layers, "hook": hook, "split": split, "n_harmful": h.count, "n_safe": s.count,
            "mode": mode, "model": lm.cfg.name}
    dirs = diff_of_means(h.mean, s.mean, meta)
    if keep is None:
        return dirs, None, None
    ph, ps = project(h.acts, dirs.directions), project(s.acts, dirs.directions)
    return dirs, ph, ps
