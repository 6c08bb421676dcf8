"""Weight orthogonalization: bake the removal of a direction (or subspace) into the weights.

Everything that *writes* into the residual stream loses its component along
``span(Q)`` (``Q [d_model, k]`` orthonormal; a unit vector is ``k = 1``):

- the token embedding rows ``E [vocab, d_model]``: ``E <- E - alpha E Q Q^T``;
- every block's attention output ``o_proj`` and MLP output ``down_proj``
  (``nn.Linear`` weights stored ``[out = d_model, in]``): ``W <- W - alpha Q Q^T W``;
- their biases ``b [d_model]`` where the architecture has them: ``b <- b - alpha Q Q^T b``.

Exactness (``alpha = 1``): with every write orthogonal to ``span(Q)``, the
residual stream never has a component along it, so the edited model computes
exactly what the original computes under :func:`refusal.intervention.ablation.ablate`
(projection at every layer input and at the final norm input): by induction
over the layers, each block sees the same (projected) input in both. Gemma 1
multiplies embeddings by ``sqrt(d_model)``; projection commutes with scalar
scaling, so editing the embedding rows is still exact.

``alpha != 1``: ``I - alpha Q Q^T`` is then not idempotent. The runtime hooks
apply it again at every layer input, so the stream component along ``Q``
shrinks by ``(1 - alpha)`` once per layer (compounding); the weight edit
scales each write's component by ``(1 - alpha)`` exactly once. The two are
*not* equivalent in general; ``alpha`` still means "fraction of each write's
component removed" in both.

Not exact, refused: architectures whose blocks normalize their outputs before
the residual add (Gemma 2/3 ``post_attention_layernorm`` +
``post_feedforward_layernorm`` "sandwich" norms): the norm's per-channel gain
and RMS rescaling re-introduce a component along ``Q``.

Tied embeddings (e.g. SmolLM2): editing the embedding must not edit the
unembedding, so ``lm_head.weight`` is first replaced by a clone and
``config.tie_word_embeddings`` set to ``False`` (logged, and recorded in the
model card).

Norm-preserving variant (``norm_preserving=True``, in the spirit of
jim-plus/llm-abliteration): after the projection each residual-space vector
that is written is rescaled to its original norm: each *column* of
``o_proj``/``down_proj`` (the vector one input unit writes), each embedding
*row* (the vector one token writes) and each bias. Rescaling such a vector
keeps it orthogonal to ``Q``, so the residual stream still carries no
component along ``Q``; the edit is then no longer equivalent to runtime
ablation.

All validation (basis, architecture, dtype) happens before any weight is touched.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from refusal.artifacts import write_json
from refusal.device import device_of, host
from refusal.families import FamilyError, embedding, family_of, residual_writers
from refusal.extraction.directions import DirectionError, as_basis
from refusal.intervention.ablation import ablate

__all__ = [
    "OrthoError",
    "OrthoResult",
    "check_exact_architecture",
    "orthogonalize",
    "basis_hash",
    "save_orthogonalized",
    "model_card",
    "equivalence_error",
]

log = logging.getLogger(__name__)

class OrthoError(DirectionError):
    """The model cannot be orthogonalized exactly (architecture) or the input is unusable."""


@dataclass
class OrthoResult:
    """What :func:`orthogonalize` did."""

    alpha: float
    rank: int
    basis_sha256: str
    norm_preserving: bool
    untied: bool
    edited: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_exact_architecture(model: nn.Module) -> None:
    """Raise :class:`OrthoError` if editing the output matrices cannot equal runtime ablation.

    Refused: families whose blocks normalize their outputs before the residual add (Gemma 2/3 "sandwich"
    norms: the norm's gain re-introduces the direction), and models whose layout :mod:`refusal.families` does
    not know (no blocks, norms or output projections where their family expects them).
    """
    mt = getattr(getattr(model, "config", None), "model_type", "?")
    try:
        fam = family_of(model)
        residual_writers(model)
    except FamilyError as e:
        raise OrthoError(f"model_type '{mt}': {e}; cannot orthogonalize") from None
    if fam.sandwich:
        raise OrthoError(
            f"model_type '{mt}' normalizes block outputs before the residual add (sandwich norms); editing the "
            "output matrices cannot remove the direction exactly (the norm's gain re-introduces it). "
            "Use runtime ablation (refusal.intervention.ablation.ablate) for this architecture.")


def basis_hash(q: torch.Tensor) -> str:
    """SHA-256 of a basis ``[d_model, k]`` as contiguous float32 bytes (shape included)."""
    t = host(q.float()).contiguous()
    h = hashlib.sha256(str(tuple(t.shape)).encode())
    h.update(t.numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def _edit_(w: torch.Tensor, q: torch.Tensor, alpha: float, keep_norm: bool, rows: bool) -> None:
    """In place: remove ``alpha`` of each residual vector's component along ``Q [d_model, k]``.

    ``rows=False``: ``w [d_model, in]`` (columns are residual vectors), ``W <- W - alpha Q (Q^T W)``.
    ``rows=True``: ``w [n, d_model]`` (rows are residual vectors), ``W <- W - alpha (W Q) Q^T``.
    Computed in float32, or float64 for float64 weights (in place then: no copy of a large
    embedding). With ``keep_norm`` each residual vector is rescaled to its original norm.
    """
    work = w if w.dtype in (torch.float32, torch.float64) else w.float()
    q = q.to(work.dtype)
    axis = 1 if rows else 0
    before = work.norm(dim=axis, keepdim=True) if keep_norm else None
    if rows:
        work.addmm_(work @ q, q.T, alpha=-alpha)
    else:
        work.addmm_(q, q.T @ work, alpha=-alpha)
    if before is not None:
        work.mul_(before / work.norm(dim=axis, keepdim=True).clamp_min(1e-30))
    if work is not w:
        w.copy_(work)


def _untie(model: nn.Module) -> bool:
    """Give ``lm_head`` its own copy of the embedding if they share storage; True if untied."""
    head = model.get_output_embeddings()
    emb = embedding(model)
    if head is None or head.weight.data_ptr() != emb.weight.data_ptr():
        return False
    head.weight = nn.Parameter(head.weight.detach().clone(), requires_grad=head.weight.requires_grad)
    model.config.tie_word_embeddings = False
    text_cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    if text_cfg is not None and text_cfg is not model.config:
        text_cfg.tie_word_embeddings = False
    if hasattr(model, "all_tied_weights_keys"):
        model.all_tied_weights_keys = {}
    log.warning(
        "%s had tied input/output embeddings: untied (lm_head.weight cloned, config.tie_word_embeddings=False) "
        "so that editing the embedding leaves the unembedding unchanged",
        type(model).__name__,
    )
    return True


@torch.no_grad()
def orthogonalize(
    model: nn.Module, direction: torch.Tensor, alpha: float = 1.0, norm_preserving: bool = False,
    progress: bool = False,
) -> OrthoResult:
    """Edit ``model`` in place so that nothing writes along ``span(Q)``.

    Args:
        model: an un-bridged HF causal LM (a :func:`refusal.models.fresh_copy`).
        direction: a vector ``[d_model]`` (normalized here) or an orthonormal basis ``[d_model, k]``.
        alpha: fraction of each write's component removed (1 = all; see the module docstring).
        norm_preserving: restore each written residual vector's norm after projecting.
        progress: show a tqdm bar over the edited matrices.

    Raises:
        OrthoError / DirectionError: bad direction or unsupported architecture; raised
        before any weight is modified.
    """
    t0 = time.perf_counter()
    if not isinstance(alpha, (int, float)) or not torch.isfinite(torch.tensor(float(alpha))):
        raise OrthoError(f"alpha must be a finite number, got {alpha!r}")
    if not isinstance(direction, torch.Tensor) or direction.dim() not in (1, 2):
        raise OrthoError(f"direction must be a tensor [d_model] or [d_model, k], got {type(direction).__name__} "
                         f"{tuple(getattr(direction, 'shape', ()))}")
    d_model = int(model.config.hidden_size)
    check_exact_architecture(model)
    q = as_basis(direction.detach().to(device_of(model)), d_model)
    writers = residual_writers(model)
    untied = _untie(model)
    edited = []
    for w in tqdm(writers, desc="orthogonalize", disable=not progress):
        _edit_(w.module.weight.data, q, alpha, norm_preserving, rows=w.kind == "embedding")
        edited.append(w.name + ".weight")
        bias = getattr(w.module, "bias", None)
        if isinstance(bias, torch.Tensor):
            _edit_(bias.data[None, :], q, alpha, norm_preserving, rows=True)
            edited.append(w.name + ".bias")
    res = OrthoResult(alpha=float(alpha), rank=int(q.shape[1]), basis_sha256=basis_hash(q),
                      norm_preserving=norm_preserving, untied=untied, edited=edited,
                      seconds=time.perf_counter() - t0)
    log.info("orthogonalized %d tensors (rank %d, alpha %g) in %.2f s", len(edited), res.rank, alpha, res.seconds)
    return res


@torch.no_grad()
def equivalence_error(original: nn.Module, edited: nn.Module, direction: torch.Tensor, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor | None = None, alpha: float = 1.0) -> float:
    """Max |logit difference| between ``edited`` and ``original`` under runtime ablation.

    ``input_ids``/``attention_mask``: ``[batch, pos]``; logits ``[batch, pos, vocab]`` are
    compared at non-padded positions only. Should be ~1e-5 in float32 for ``alpha = 1``.
    """
    with ablate(original, direction, alpha=alpha):
        a = original(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    b = edited(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    diff = (a - b).abs()
    if attention_mask is not None:
        diff = diff[attention_mask.bool()]
    return float(diff.max())


# --------------------------------------------------------------------------- saving


def model_card(result: OrthoResult, info: dict[str, Any]) -> str:
    """README.md text for a saved orthogonalized checkpoint."""
    lines = [
        "---",
        "tags: [refusal-representations, orthogonalized]",
        "---",
        f"# {info.get('model_id', 'model')} — orthogonalized",
        "",
        "Weights edited by `refusal.intervention.orthogonalize.orthogonalize`: the component along span(Q) was removed from the "
        "token embedding and from every block's attention-output (o_proj) and MLP-output (down_proj) matrix and bias "
        "(`W <- W - alpha Q Q^T W`).",
        "With alpha = 1 this model's logits equal the original model's under runtime ablation at every layer input, "
        "every pre-MLP norm input "
        "and at the final norm input; for alpha != 1 the two differ (runtime ablation compounds over layers).",
        "",
        "| field | value |",
        "|---|---|",
        f"| base model | {info.get('model_id', '?')} |",
        f"| direction / basis SHA-256 | `{result.basis_sha256}` |",
        f"| basis rank | {result.rank} |",
        f"| alpha | {result.alpha} |",
        f"| norm-preserving | {result.norm_preserving} |",
        f"| source layer | {info.get('layer', '?')} |",
        f"| source position | {info.get('position', '?')} |",
        f"| removed basis | {info.get('basis', '?')} (k = {info.get('k', result.rank)}) |",
        f"| how it was chosen | {info.get('source', '?')} |",
        f"| dataset SHA-256 | `{info.get('dataset_sha256', '?')}` |",
        f"| edited tensors | {len(result.edited)} |",
        "",
    ]
    if result.untied:
        lines += [
            "**Embeddings untied.** The base model ties its input embedding and its unembedding (lm_head). "
            "To edit the embedding without editing the unembedding, lm_head.weight was cloned before the edit and "
            "`tie_word_embeddings` set to false; this checkpoint stores both matrices (larger than the base).",
            "",
        ]
    lines.append("Research artifact: a model with its refusal direction removed. Not for deployment.")
    return "\n".join(lines) + "\n"


def save_orthogonalized(model: nn.Module, tokenizer: Any, out_dir: str | Path, result: OrthoResult,
                        info: dict[str, Any]) -> Path:
    """Save an edited model as an HF checkpoint (safetensors) with a model card, atomically.

    Writes into ``<out_dir>.partial`` and renames over ``out_dir``; adds
    ``README.md`` (model card) and ``orthogonalization.json`` (result + info).
    """
    if type(model).__name__.endswith("Bridge") or hasattr(model, "original_model"):
        raise OrthoError("refusing to save a TransformerLens bridge: edit and save an un-bridged fresh_copy(lm)")
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    (tmp / "README.md").write_text(model_card(result, info))
    write_json(tmp / "orthogonalization.json", {"result": result.to_dict(), "info": info})
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    log.info("saved orthogonalized checkpoint to %s", out_dir)
    return out_dir
