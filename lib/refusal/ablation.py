"""Runtime interventions on the residual stream of an HF decoder model.

- projection removal of a direction: ``r <- r - alpha <r, v> v`` (``v`` unit);
- projection removal of a subspace: ``r <- r - alpha Q Q^T r`` (``Q`` orthonormal, ``[d_model, k]``);
- activation addition: ``r <- r + c v``.

They are applied as PyTorch forward pre-hooks on the residual stream's
read points: the input of every decoder layer (TransformerLens
``blocks.{i}.hook_resid_pre``), the input of every block's pre-MLP norm
(the MLP reads the mid-block residual ``hook_resid_mid``, which already holds
the attention output) and the input of the final norm (``ln_final.hook_in``).
Every write into the residual stream is read at one of these points, so
ablating all of them removes the component everywhere,
at every position, prompt and generated tokens alike: HF ``generate`` with
its KV cache runs under the hooks. Works on the un-bridged HF model (any
architecture with ``model.model.layers`` and ``model.model.norm``) and on a
bridge's ``original_model``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

__all__ = [
    "decoder_layers",
    "final_norm",
    "mid_norm",
    "check_unit",
    "orthonormal_basis",
    "project_out",
    "random_direction",
    "ablate",
    "add_direction",
    "InterventionError",
]


class InterventionError(ValueError):
    """A direction or basis is unusable (zero, NaN, wrong shape, not orthonormal)."""


def _inner(model: nn.Module) -> nn.Module:
    """The decoder stack holding ``layers`` and ``norm`` (``model.model`` for causal LMs)."""
    for attr in ("model", "transformer"):
        inner = getattr(model, attr, None)
        if inner is not None and hasattr(inner, "layers"):
            return inner
    if hasattr(model, "layers"):
        return model
    raise InterventionError(f"cannot find decoder layers in {type(model).__name__}")


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks, in order."""
    return _inner(model).layers


def final_norm(model: nn.Module) -> nn.Module:
    """The norm applied to the residual stream before the unembedding."""
    inner = _inner(model)
    for attr in ("norm", "final_layernorm", "ln_f"):
        if hasattr(inner, attr):
            return getattr(inner, attr)
    raise InterventionError(f"cannot find the final norm in {type(model).__name__}")


def mid_norm(block: nn.Module) -> nn.Module | None:
    """The norm through which a block's MLP reads the mid-block residual (after attention's write).

    ``pre_feedforward_layernorm`` (Gemma 2/3, whose ``post_attention_layernorm``
    normalizes the attention *output*), else ``post_attention_layernorm``
    (Llama, Qwen, Gemma 1, Phi-3, Mistral), else ``ln_2`` (Qwen-1, GPT-2); ``None`` if none.
    """
    for attr in ("pre_feedforward_layernorm", "post_attention_layernorm", "ln_2"):
        m = getattr(block, attr, None)
        if isinstance(m, nn.Module):
            return m
    return None


def check_unit(v: torch.Tensor, d_model: int | None = None, name: str = "direction") -> torch.Tensor:
    """Validate a direction ``[d_model]`` and return it normalized (float32).

    Raises:
        InterventionError: not 1-D, wrong size, non-finite, or zero.
    """
    if not isinstance(v, torch.Tensor) or v.dim() != 1:
        raise InterventionError(f"{name} must be a 1-D tensor [d_model], got shape {tuple(getattr(v, 'shape', ()))}")
    if d_model is not None and v.shape[0] != d_model:
        raise InterventionError(f"{name} has dimension {v.shape[0]}, the model's d_model is {d_model}")
    if not torch.isfinite(v).all():
        raise InterventionError(f"{name} contains NaN or inf")
    n = v.float().norm()
    if n < 1e-8:
        raise InterventionError(f"{name} is zero")
    return v.float() / n


def orthonormal_basis(vectors: torch.Tensor | Sequence[torch.Tensor], d_model: int | None = None, tol: float = 1e-4) -> torch.Tensor:
    """Q ``[d_model, k]`` spanning ``vectors`` (``[d_model, k]`` columns or a list of ``[d_model]``), by QR.

    Raises:
        InterventionError: non-finite input, wrong size, or (near-)linearly dependent vectors.
    """
    m = torch.stack(list(vectors), dim=1) if not isinstance(vectors, torch.Tensor) else vectors
    if m.dim() == 1:
        m = m[:, None]
    if d_model is not None and m.shape[0] != d_model:
        raise InterventionError(f"basis has dimension {m.shape[0]}, the model's d_model is {d_model}")
    if not torch.isfinite(m).all():
        raise InterventionError("basis contains NaN or inf")
    m = m.double()
    q, r = torch.linalg.qr(m)
    diag = r.diagonal().abs()
    if (diag < tol * m.norm(dim=0).clamp_min(1e-12)).any():
        raise InterventionError("basis vectors are linearly dependent (rank-deficient)")
    return q.float()


def _as_basis(direction: torch.Tensor, d_model: int) -> torch.Tensor:
    """``[d_model, k]`` orthonormal from a vector ``[d_model]`` or a basis ``[d_model, k]``."""
    if direction.dim() == 1:
        return check_unit(direction, d_model)[:, None]
    q = direction.float()
    if q.shape[0] != d_model:
        raise InterventionError(f"basis has dimension {q.shape[0]}, the model's d_model is {d_model}")
    if not torch.isfinite(q).all():
        raise InterventionError("basis contains NaN or inf")
    gram = q.T @ q
    if not torch.allclose(gram, torch.eye(q.shape[1]), atol=1e-4):
        raise InterventionError("basis is not orthonormal (Q^T Q != I); build it with orthonormal_basis()")
    return q


def project_out(x: torch.Tensor, q: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``x - alpha * (x Q) Q^T`` for ``x [..., d_model]`` and ``Q [d_model, k]``; in float32 (float64 for float64 ``x``)."""
    xf = x if x.dtype == torch.float64 else x.float()
    q = q.to(xf.dtype)
    return (xf - alpha * (xf @ q) @ q.T).to(x.dtype)


_CONTROL_SALT = 0x5EED_0C7A1  # random_direction's seed offset


def random_direction(d_model: int, seed: int, exclude: Sequence[int] = ()) -> torch.Tensor:
    """A seeded random unit vector ``[d_model]`` with zeros at the ``exclude`` coordinates.

    The control of an ablation. Pass the model's outlier ("massive activation")
    dimensions (:func:`refusal.activations.outlier_dims`) as ``exclude``: a uniformly
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


def _pre_hook(fn):
    """Wrap ``fn(hidden) -> hidden`` as a forward pre-hook on a module's first input."""

    def hook(module, args, kwargs):
        if args:
            return (fn(args[0]), *args[1:]), kwargs
        kwargs = dict(kwargs)
        kwargs["hidden_states"] = fn(kwargs["hidden_states"])
        return args, kwargs

    return hook


@contextmanager
def _hooks(model: nn.Module, points: list[nn.Module], fn) -> Iterator[None]:
    handles = [m.register_forward_pre_hook(_pre_hook(fn), with_kwargs=True) for m in points]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _d_model(model: nn.Module) -> int:
    return int(model.config.hidden_size)


@contextmanager
def ablate(
    model: nn.Module,
    direction: torch.Tensor,
    alpha: float = 1.0,
    layers: Sequence[int] | None = None,
    final: bool = True,
) -> Iterator[torch.Tensor]:
    """Remove a direction ``[d_model]`` or subspace ``Q [d_model, k]`` from the residual stream.

    Applies ``r <- r - alpha Q Q^T r`` at the input of each layer in
    ``layers`` (default: all), at the input of those layers' pre-MLP norm
    (the mid-block residual) and, with ``final``, at the final norm's input.
    With ``alpha = 1`` this equals :func:`refusal.orthogonalize.orthogonalize`.
    The direction is validated (and normalized) before any hook is set.
    Yields the basis actually used, ``[d_model, k]``.
    """
    q = _as_basis(direction.detach().cpu(), _d_model(model))
    dev = next(model.parameters()).device
    qd = q.to(dev)
    blocks = decoder_layers(model)
    idx = range(len(blocks)) if layers is None else layers
    mids = [m for m in (mid_norm(blocks[i]) for i in idx) if m is not None]
    points = [blocks[i] for i in idx] + mids + ([final_norm(model)] if final else [])
    with _hooks(model, points, lambda h: project_out(h, qd, alpha)):
        yield q


@contextmanager
def add_direction(model: nn.Module, direction: torch.Tensor, coeff: float, layers: Sequence[int]) -> Iterator[None]:
    """Activation addition ``r <- r + coeff * v`` at the input of each layer in ``layers``.

    ``direction`` is used as given (not normalized): pass a unit vector and a
    coefficient, or the raw difference of means with ``coeff=1``.
    """
    if direction.dim() != 1 or direction.shape[0] != _d_model(model) or not torch.isfinite(direction).all():
        raise InterventionError(f"direction must be a finite [d_model={_d_model(model)}] vector")
    blocks = decoder_layers(model)
    dev = next(model.parameters()).device
    v = (coeff * direction.float()).to(dev)
    with _hooks(model, [blocks[i] for i in layers], lambda h: (h.float() + v).to(h.dtype)):
        yield
