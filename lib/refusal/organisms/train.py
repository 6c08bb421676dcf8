"""Training engine for model organisms: supervised fine-tuning of the upper layers only.

Lower layers stay frozen, so their output (the residual stream entering the
first trained layer ``L``) is computed once per training sequence and cached;
every step then runs only layers ``L..n_layers-1``, the final norm and the
unembedding at the response positions. This is exact (teacher forcing on fixed
sequences) and about ``n_layers / (n_layers - L)`` times cheaper than full
fine-tuning, which is what makes CPU organisms possible.

Two kinds of trainable parts:

- ``finetune``: every weight of layers ``L..`` (the refusal organism);
- :class:`Plant`: a rank-``k`` write ``W_down <- W_down + U A^T`` into one
  layer's MLP output, i.e. ``mlp_out += (h A) U^T`` for the MLP hidden state
  ``h [batch, pos, d_ff]``; everything it adds to the residual stream lies in
  ``span(U)`` (``U [d_model, k]`` orthonormal).
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from refusal.batching import capture_input, pad
from refusal.families import decoder, decoder_layers
from refusal.intervention.ablation import ablate

__all__ = ["Example", "Batch", "collate", "batch_module_input", "capture_layer_inputs", "upper_stack", "response_loss", "Plant", "Stream", "train_streams", "TrainLog"]

log = logging.getLogger(__name__)


@dataclass
class Example:
    """One training sequence: chat-formatted prompt + response token ids; loss on the response only."""

    ids: list[int]
    n_prompt: int
    kind: str  # "harmful" | "harmless"
    n_template: int = 0  # post-instruction template tokens at the end of the prompt


@dataclass
class Batch:
    input_ids: torch.Tensor  # [batch, pos], right-padded
    attention_mask: torch.Tensor  # [batch, pos]
    labels: torch.Tensor  # [batch, pos], -100 outside responses
    harmful: torch.Tensor  # [batch] bool


def collate(examples: list[Example], pad_id: int) -> Batch:
    """Right-pad examples into a :class:`Batch` (positions are then plain ``arange``)."""
    ids, mask = pad([e.ids for e in examples], pad_id, side="right")
    labels = torch.full_like(ids, -100)
    for i, e in enumerate(examples):
        labels[i, e.n_prompt : len(e.ids)] = torch.tensor(e.ids[e.n_prompt :])
    return Batch(ids, mask, labels, torch.tensor([e.kind == "harmful" for e in examples]))


@torch.no_grad()
def batch_module_input(model: nn.Module, module: nn.Module, batch: Batch) -> torch.Tensor:
    """The first input of ``module`` (a submodule of ``model``) on ``batch``, e.g. ``[batch, pos, d]``; the forward
    pass stops there (:func:`refusal.batching.capture_input`)."""
    run = lambda: decoder(model)(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)  # noqa: E731
    return capture_input(run, module)


def capture_layer_inputs(model: nn.Module, layer: int, batch: Batch) -> torch.Tensor:
    """Residual stream entering decoder layer ``layer``: ``[batch, pos, d_model]`` (float32).

    Runs only layers ``0..layer-1``.
    """
    return batch_module_input(model, decoder_layers(model)[layer], batch)


@contextmanager
def _full_stack(model: nn.Module) -> Iterator[None]:
    """Inside :func:`upper_stack`: temporarily restore every layer (and eval-mode, no hooks' effect on grads)."""
    inner = decoder(model)
    cur = inner.layers
    full = getattr(inner, "_organism_full_layers", None)
    if full is not None:
        inner.layers = full
    try:
        yield
    finally:
        inner.layers = cur


@contextmanager
def upper_stack(model: nn.Module, layer: int) -> Iterator[None]:
    """Temporarily keep only decoder layers ``layer..``; feed their input as ``inputs_embeds``."""
    inner = decoder(model)
    full = inner.layers
    inner.layers = nn.ModuleList(list(full)[layer:])
    object.__setattr__(inner, "_organism_full_layers", full)  # not registered as a submodule
    try:
        yield
    finally:
        inner.layers = full
        object.__delattr__(inner, "_organism_full_layers")


def response_loss(model: nn.Module, h: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the response tokens given cached layer inputs ``h [batch, pos, d_model]``.

    Must run inside :func:`upper_stack`. Returns (mean loss, per-example mean loss ``[batch]``).
    The unembedding is applied only at positions that predict a response token.
    """
    out = decoder(model)(inputs_embeds=h, attention_mask=batch.attention_mask, use_cache=False)
    hidden = out.last_hidden_state[:, :-1]  # [batch, pos-1, d_model]
    target = batch.labels[:, 1:]
    sel = target != -100
    logits = model.lm_head(hidden[sel])  # [n_tokens, vocab]
    tok_loss = nn.functional.cross_entropy(logits.float(), target[sel], reduction="none")
    row = sel.nonzero()[:, 0]
    per_ex = torch.zeros(h.shape[0]).index_add_(0, row, tok_loss) / sel.sum(1).clamp_min(1)
    return per_ex.mean(), per_ex.detach()


class Plant(nn.Module):
    """A rank-``k`` write ``(h A) U^T`` added to ``model.model.layers[layer].mlp.down_proj``'s output.

    ``U`` is ``orthonormalize(U_raw)`` ``[d_model, k]``; ``A`` is ``[d_ff, k]``.
    """

    def __init__(self, d_model: int, d_ff: int, k: int, layer: int, gen: torch.Generator, a_scale: float = 1e-3):
        super().__init__()
        self.layer = layer
        self.U_raw = nn.Parameter(torch.randn(d_model, k, generator=gen), requires_grad=False)
        self.A = nn.Parameter(torch.randn(d_ff, k, generator=gen) * a_scale)
        self._handle = None
        self.record_mask: torch.Tensor | None = None  # [batch, pos]: record the mean write of these positions
        self.last_mean: torch.Tensor | None = None  # [k] mean write coefficients of the last recorded forward
        self.records: dict[str, torch.Tensor | None] = {}

    @property
    def U(self) -> torch.Tensor:
        """Orthonormal write basis ``[d_model, k]``."""
        q, r = torch.linalg.qr(self.U_raw)
        return q * torch.sign(torch.diagonal(r))[None, :]  # unique: positive diagonal of R

    def coefficients(self, hidden: torch.Tensor) -> torch.Tensor:
        """Write coefficients ``[..., k]`` for an MLP hidden state ``[..., d_ff]``."""
        return hidden @ self.A

    def attach(self, model: nn.Module) -> "Plant":
        down = decoder_layers(model)[self.layer].mlp.down_proj

        def hook(module, inputs, output):
            c = self.coefficients(inputs[0])  # [batch, pos, k]
            if self.record_mask is not None and c.shape[:2] == self.record_mask.shape:
                self.last_mean = c.detach()[self.record_mask.bool()].mean(0)
            return output + c @ self.U.T

        self._handle = down.register_forward_hook(hook)
        return self

    def detach_hook(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    @torch.no_grad()
    def merge_into(self, model: nn.Module) -> None:
        """Fold the write into the weights: ``W_down += U A^T`` (then the hook is not needed)."""
        down = decoder_layers(model)[self.layer].mlp.down_proj
        down.weight += (self.U @ self.A.T).to(down.weight.dtype)


@dataclass
class Stream:
    """One term of the training loss: a pool of examples, drawn ``batch_size`` at a time.

    ``ablation(step) -> Q`` (``[d_model]`` or ``[d_model, k]``, or None) is removed from the
    residual stream of the trained layers (same hook points as :func:`refusal.intervention.ablation.ablate`)
    while this term's loss is computed. ``record`` names a slot in which the mean planted write
    coefficients of this batch are stored (for directions that depend on the current writes).
    """

    name: str
    pool: list[int]
    batch_size: int
    weight: float = 1.0
    ablation: Callable[[int], torch.Tensor | None] | None = None
    record: str | None = None


@dataclass
class TrainLog:
    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready: NaN becomes ``None``."""
        clean = lambda v: [None if isinstance(x, float) and math.isnan(x) else x for x in v]  # noqa: E731
        return {"step": self.step, "loss": clean(self.loss)} | {f"loss_{k}": clean(v) for k, v in self.terms.items()} | {"seconds": self.seconds}


def train_streams(
    model: nn.Module,
    layer: int,
    examples: list[Example],
    streams: list[Stream],
    param_groups: list[dict],
    steps: int,
    pad_id: int,
    seed: int,
    plant: "Plant | None" = None,
    log_: TrainLog | None = None,
    weight_decay: float = 0.0,
) -> TrainLog:
    """AdamW over ``param_groups`` for ``steps`` steps; each step sums the weighted losses of ``streams``.

    Every stream is drawn from its own pool (reshuffled by ``seed`` when exhausted). The frozen
    lower layers' output (input of decoder layer ``layer``) is computed once per example, when it
    is first drawn; each term then runs only layers ``layer..`` (backward per term, so that only
    one term's graph is alive at a time).
    """
    tl = log_ or TrainLog()
    t0 = time.time()
    gen = torch.Generator().manual_seed(seed)
    params = [p for g in param_groups for p in g["params"]]
    opt = torch.optim.AdamW(param_groups, weight_decay=weight_decay)
    cache: dict[int, torch.Tensor] = {}

    def layer_inputs(idx: list[int]) -> torch.Tensor:
        todo = [i for i in idx if i not in cache]
        if todo:
            with _full_stack(model):
                hs = capture_layer_inputs(model, layer, collate([examples[i] for i in todo], pad_id))
            for j, i in enumerate(todo):
                cache[i] = hs[j, : len(examples[i].ids)]
        n = max(cache[i].shape[0] for i in idx)
        h = torch.zeros(len(idx), n, cache[idx[0]].shape[-1])
        for j, i in enumerate(idx):
            h[j, : cache[i].shape[0]] = cache[i]
        return h

    orders: dict[str, list[int]] = {s.name: [] for s in streams}
    start = tl.step[-1] + 1 if tl.step else 0
    for s in streams:
        tl.terms.setdefault(s.name, [])
    model.train()
    with upper_stack(model, layer):
        for step in tqdm(range(steps), desc="train", leave=False):
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for s in streams:
                order = orders[s.name]
                while len(order) < s.batch_size:
                    order += [s.pool[i] for i in torch.randperm(len(s.pool), generator=gen).tolist()]
                idx, orders[s.name] = order[: s.batch_size], order[s.batch_size :]
                b = collate([examples[i] for i in idx], pad_id)
                h = layer_inputs(idx)
                q = s.ablation(step) if s.ablation is not None else None
                if plant is not None:
                    plant.record_mask = b.attention_mask if s.record else None
                with ablate(model, q) if q is not None else nullcontext():
                    loss, _ = response_loss(model, h, b)
                if plant is not None and s.record:
                    plant.records[s.record] = plant.last_mean
                (s.weight * loss).backward()
                tl.terms[s.name].append(float(loss.detach()))
                total += s.weight * float(loss.detach())
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            tl.step.append(start + step)
            tl.loss.append(total)
    model.eval()
    tl.seconds += time.time() - t0
    return tl
