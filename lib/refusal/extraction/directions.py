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
from typing import Any, Sequence

import torch

from refusal.artifacts import read_tensors, write_tensors
from refusal.device import host
from refusal.extraction.activations import collect, project, template_positions

__all__ = ["DirectionError", "check_unit", "orthonormal_basis", "as_basis", "random_direction", "random_basis", "rms_projection",
           "matched_random_directions", "Directions",
           "diff_of_means", "extract_directions", "write_directions", "read_directions", "Selected", "write_selected",
           "read_selected", "DEGENERATE_RTOL"]

# A difference whose norm is below this fraction of the means' norms is treated as zero.
DEGENERATE_RTOL = 1e-6


# --------------------------------------------------------------------------- one direction, one basis


class DirectionError(ValueError):
    """A direction or basis is unusable (zero, NaN, wrong shape, not orthonormal)."""


def check_unit(v: torch.Tensor, d_model: int | None = None, name: str = "direction") -> torch.Tensor:
    """Validate a direction ``[d_model]`` and return it normalized (float32).

    Raises:
        DirectionError: not 1-D, wrong size, non-finite, or zero.
    """
    if not isinstance(v, torch.Tensor) or v.dim() != 1:
        raise DirectionError(f"{name} must be a 1-D tensor [d_model], got shape {tuple(getattr(v, 'shape', ()))}")
    if d_model is not None and v.shape[0] != d_model:
        raise DirectionError(f"{name} has dimension {v.shape[0]}, the model's d_model is {d_model}")
    if not torch.isfinite(v).all():
        raise DirectionError(f"{name} contains NaN or inf")
    n = v.float().norm()
    if n < 1e-8:
        raise DirectionError(f"{name} is zero")
    return v.float() / n


def orthonormal_basis(vectors: torch.Tensor | Sequence[torch.Tensor], d_model: int | None = None, tol: float = 1e-4) -> torch.Tensor:
    """Q ``[d_model, k]`` spanning ``vectors`` (``[d_model, k]`` columns or a list of ``[d_model]``), by QR.

    Raises:
        DirectionError: non-finite input, wrong size, or (near-)linearly dependent vectors.
    """
    m = torch.stack(list(vectors), dim=1) if not isinstance(vectors, torch.Tensor) else vectors
    if m.dim() == 1:
        m = m[:, None]
    if d_model is not None and m.shape[0] != d_model:
        raise DirectionError(f"basis has dimension {m.shape[0]}, the model's d_model is {d_model}")
    if not torch.isfinite(m).all():
        raise DirectionError("basis contains NaN or inf")
    m = m.double()
    q, r = torch.linalg.qr(m)
    diag = r.diagonal().abs()
    if (diag < tol * m.norm(dim=0).clamp_min(1e-12)).any():
        raise DirectionError("basis vectors are linearly dependent (rank-deficient)")
    return q.float()


def as_basis(direction: torch.Tensor, d_model: int) -> torch.Tensor:
    """``[d_model, k]`` orthonormal from a vector ``[d_model]`` or a basis ``[d_model, k]``."""
    if direction.dim() == 1:
        return check_unit(direction, d_model)[:, None]
    q = direction.float()
    if q.shape[0] != d_model:
        raise DirectionError(f"basis has dimension {q.shape[0]}, the model's d_model is {d_model}")
    if not torch.isfinite(q).all():
        raise DirectionError("basis contains NaN or inf")
    gram = q.T @ q
    if not torch.allclose(gram, torch.eye(q.shape[1], device=q.device), atol=1e-4):
        raise DirectionError("basis is not orthonormal (Q^T Q != I); build it with orthonormal_basis()")
    return q




_CONTROL_SALT = 0x5EED_0C7A1  # random_direction's seed offset


def random_direction(d_model: int, seed: int, exclude: Sequence[int] = ()) -> torch.Tensor:
    """A seeded random unit vector ``[d_model]`` with zeros at the ``exclude`` coordinates.

    The control of an ablation. Pass the model's outlier ("massive activation")
    dimensions (:func:`refusal.extraction.activations.outlier_dims`) as ``exclude``: a uniformly
    random direction has a component of about ``1/sqrt(d_model)`` on them, so removing
    it at every position also moves the attention-sink token, whose residual is
    ``~1e4`` along those coordinates, by hundreds of units; that is a different
    intervention from removing a difference-of-means direction, which is ~0 there.
    """
    # salted: a plain manual_seed(seed) would reproduce other seeded draws, e.g. an organism's planted
    # U = orthonormalize(randn(d_model, k)) with seed 0, which made a "random" control equal the answer
    v = torch.randn(d_model, generator=torch.Generator().manual_seed(_CONTROL_SALT + int(seed)))
    if len(exclude):
        v[list(exclude)] = 0.0
    return v / v.norm()


def random_basis(d_model: int, k: int, seed: int, exclude: Sequence[int] = ()) -> torch.Tensor:
    """``[d_model, k]`` orthonormal: ``k`` seeded random directions (zeros at ``exclude``), orthonormalized.

    The control of the rank sweep: removing its first ``j`` columns is what removing ``j`` directions of no
    particular meaning does. Its first column is ``random_direction(d_model, seed, exclude)``.
    """
    vecs = [random_direction(d_model, seed + 7919 * j, exclude) for j in range(k)]
    return orthonormal_basis(vecs)


def rms_projection(acts: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Root mean square of ``<x, v>`` over the rows of ``acts [n, d_model]``, for each column of ``v [d_model, m]``
    (or the vector ``v [d_model]``): how much of the residual stream a removal of ``v`` takes away."""
    a = acts.to(torch.float64)
    vv = (v[:, None] if v.dim() == 1 else v).to(device=a.device, dtype=torch.float64)
    return (a @ vv).pow(2).mean(0).sqrt()


def matched_random_directions(acts: torch.Tensor, target: torch.Tensor, n: int, seed: int,
                              exclude: Sequence[int] = (), draws: int = 8) -> tuple[torch.Tensor, dict[str, Any]]:
    """``n`` seeded random unit directions ``[n, d_model]`` whose removal takes as much from the residual stream as
    removing ``target`` does: their RMS projection on ``acts [n_prompts, d_model]`` (e.g. harmless prompts'
    residual at the selected layer and position) matches ``target``'s.

    A uniformly random direction has a small projection on real activations (the residual's variance lives in a
    few directions), a difference-of-means direction a large one; a control that removes far less is no control.
    Each direction is ``normalize((1 - lam) u + lam g)`` with ``u`` isotropic (zeros at ``exclude``) and ``g``
    drawn from the activations' own second moment (``A^T z``, zeros at ``exclude``); ``lam`` in [0, 1] is set by
    bisection so that the mean RMS projection of ``draws`` pilot directions equals the target's (``lam = 1`` and a
    smaller scale, recorded, when even activation-shaped directions fall short).

    Returns:
        (directions ``[n, d_model]`` float32, record: target and achieved RMS projections, ``lam``).
    """
    A = acts.to(torch.float64)
    d = A.shape[1]
    goal = float(rms_projection(A, target.to(A.device)))
    ex = list(exclude)

    def draw(lam: float, s: int) -> torch.Tensor:
        u = random_direction(d, s, ex).to(device=A.device, dtype=torch.float64)
        z = torch.randn(A.shape[0], generator=torch.Generator().manual_seed(0x6A7C + s), dtype=torch.float64)
        g = A.T @ z.to(A.device)
        if ex:
            g[ex] = 0.0
        g = g / g.norm()
        r = (1 - lam) * u + lam * g
        return r / r.norm()

    def mean_rms(lam: float) -> float:
        return float(rms_projection(A, torch.stack([draw(lam, seed + 100 + i) for i in range(draws)], 1)).mean())

    lo, hi = 0.0, 1.0
    if mean_rms(lo) >= goal:
        lam = 0.0
    elif mean_rms(hi) <= goal:
        lam = 1.0
    else:
        for _ in range(30):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if mean_rms(mid) < goal else (lo, mid)
        lam = (lo + hi) / 2
    dirs = torch.stack([draw(lam, seed + i) for i in range(n)])
    got = rms_projection(A, dirs.T)
    return host(dirs.float()), {"target_rms_projection": goal, "rms_projection": [float(x) for x in got],
                                "lam": lam, "n_prompts": int(A.shape[0])}


# --------------------------------------------------------------------------- stage 02: the candidates


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
        mean_harmful, mean_safe: ``[L, P, d]`` on any device (float64 preferred; computed in float64 there).
            The result is in host memory (it is small, and it is written to files and read by numpy).
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
    return Directions(directions=host(unit.float()), diff=host(torch.nan_to_num(diff).float()),
                      mean_harmful=host(mh.float()), mean_safe=host(ms.float()), valid=host(valid), meta=dict(meta or {}))


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

    Streams ``harmful`` and ``safe`` through :func:`refusal.extraction.activations.collect` (float64
    sums). With ``keep`` (opt-in, e.g. ``torch.float16``), the activations at the
    selected positions are kept for the duration of this call only, so that the
    in-sample projections onto the new directions come from the same forward pass;
    they are returned as ``[n_harmful, L, P]`` and ``[n_safe, L, P]`` (else ``None``).

    Returns:
        (directions with the contract's meta, harmful projections, safe projections).
    """
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
    ph, ps = (project(x.acts, dirs.directions.to(x.acts.device)) for x in (h, s))
    return dirs, host(ph), host(ps)


# --------------------------------------------------------------------------- stage 04 -> 05: the selection


SELECTED_META = {"layer": int, "position": int, "alpha": (int, float), "source": str, "k": int, "basis": str}


@dataclass
class Selected:
    """What stage 04 chose and stage 05 removes from the weights (``runs/<model>/04_ablate/selected.safetensors``).

    tensors
        ``direction`` ``[d_model]`` float32, unit: the selected candidate (layer, position).
        ``basis`` ``[d_model, k]`` float32, orthonormal: the subspace the weight edit removes; for ``k = 1``
        it is ``direction[:, None]``.
    meta
        ``layer``, ``position`` (of the candidate), ``alpha``, ``k``, ``basis`` (the construction of the
        removed basis: ``selected`` for the direction itself, else the rank-sweep basis name), ``source``
        (how the direction and the basis were chosen, in words), plus anything the stage records.
    """

    direction: torch.Tensor
    basis: torch.Tensor
    meta: dict[str, Any]
    path: Path | None = None

    @property
    def q(self) -> torch.Tensor:
        """The basis to remove, ``[d_model, k]``."""
        return self.basis

    @property
    def k(self) -> int:
        return int(self.basis.shape[1])


def write_selected(path: str | Path, sel: Selected) -> Path:
    """Write a :class:`Selected` (checked first: unit direction, orthonormal basis, meta fields)."""
    _check_selected(sel, str(path))
    tensors = {"direction": sel.direction.float().clone(), "basis": sel.basis.float().contiguous().clone()}
    return write_tensors(path, tensors, sel.meta)


def read_selected(path: str | Path, d_model: int | None = None) -> Selected:
    """Read and validate ``selected.safetensors``; an error names the file and what is wrong."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no selected direction (run notebooks/04_ablate first)")
    tensors, meta = read_tensors(p)
    missing = {"direction", "basis"} - set(tensors)
    if missing:
        raise DirectionError(f"{p}: missing tensor(s) {sorted(missing)} (found {sorted(tensors)})")
    sel = Selected(direction=tensors["direction"].float(), basis=tensors["basis"].float(), meta=meta, path=p)
    _check_selected(sel, str(p), d_model)
    return sel


def _check_selected(sel: Selected, where: str, d_model: int | None = None) -> None:
    for key, tp in SELECTED_META.items():
        if key not in sel.meta or not isinstance(sel.meta[key], tp) or isinstance(sel.meta[key], bool):
            raise DirectionError(f"{where}: meta field '{key}' missing or not {tp} (meta: {sel.meta})")
    d = sel.direction
    try:
        if d.dim() != 1:
            raise DirectionError(f"direction must be [d_model], got shape {tuple(d.shape)}")
        if abs(float(d.norm()) - 1.0) > 1e-3:
            raise DirectionError(f"direction is not unit-norm (norm {float(d.norm()):.4g})")
        check_unit(d, d_model)
        if sel.basis.dim() != 2 or sel.basis.shape[0] != d.shape[0]:
            raise DirectionError(f"basis must be [d_model={d.shape[0]}, k], got {tuple(sel.basis.shape)}")
        as_basis(sel.basis, d.shape[0])
        if sel.meta["k"] != sel.basis.shape[1]:
            raise DirectionError(f"meta k = {sel.meta['k']} but the basis has {sel.basis.shape[1]} columns")
    except DirectionError as e:
        raise DirectionError(f"{where}: {e}") from None
