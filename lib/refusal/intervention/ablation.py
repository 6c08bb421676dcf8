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
its KV cache runs under the hooks. Works on the un-bridged HF model of any
architecture of :mod:`refusal.families` (which knows where those points are)
and on a bridge's ``original_model``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

from refusal.device import device_of
from refusal.extraction.directions import DirectionError, as_basis
from refusal.families import decoder_layers, read_points

__all__ = ["project_out", "ablate", "add_direction"]


def project_out(x: torch.Tensor, q: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``x - alpha * (x Q) Q^T`` for ``x [..., d_model]`` and ``Q [d_model, k]``; in float32 (float64 for float64 ``x``)."""
    xf = x if x.dtype == torch.float64 else x.float()
    q = q.to(xf.dtype)
    return (xf - alpha * (xf @ q) @ q.T).to(x.dtype)


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
    With ``alpha = 1`` this equals :func:`refusal.intervention.orthogonalize.orthogonalize`.
    The direction is validated (and normalized) before any hook is set.
    Yields the basis actually used, ``[d_model, k]``.
    """
    q = as_basis(direction.detach().to(device_of(model)), _d_model(model))
    with _hooks(model, read_points(model, layers, final), lambda h: project_out(h, q, alpha)):
        yield q


@contextmanager
def add_direction(model: nn.Module, direction: torch.Tensor, coeff: float, layers: Sequence[int]) -> Iterator[None]:
    """Activation addition ``r <- r + coeff * v`` at the input of each layer in ``layers``.

    ``direction`` is used as given (not normalized): pass a unit vector and a
    coefficient, or the raw difference of means with ``coeff=1``.
    """
    if direction.dim() != 1 or direction.shape[0] != _d_model(model) or not torch.isfinite(direction).all():
        raise DirectionError(f"direction must be a finite [d_model={_d_model(model)}] vector")
    blocks = decoder_layers(model)
    v = (coeff * direction.float()).to(device_of(model))
    with _hooks(model, [blocks[i] for i in layers], lambda h: (h.float() + v).to(h.dtype)):
        yield
