"""Residual-stream activations at chosen layers, hook points and template positions.

Collection runs through the TransformerLens 4.x bridge (:func:`refusal.models.load_bridge`)
with one hook per needed layer (exact hook names ``blocks.{i}.hook_resid_pre|mid|post``,
never a callable filter, which would also see alias names). Each hook gathers only
the selected positions of its layer, ``x[:, positions]`` -> ``[batch, n_pos, d_model]``,
and the forward pass is stopped (an exception raised from the hook of the last
needed layer) right after that layer: later blocks, the final norm and the
unembedding are never computed.

Positions are negative offsets from the end of the chat-formatted prompt
(``-1`` = last token). :func:`template_positions` derives the post-instruction
positions from the tokenizer's chat template: it formats a probe prompt and takes
the tokens that follow the user's text (for Qwen/SmolLM ``<|im_end|>``, ``\\n``,
``<|im_start|>``, ``assistant``, ``\\n`` -> positions ``[-5, ..., -1]``). Every
prompt is checked to end with exactly these tokens.

Two modes give the same numbers up to float rounding:

* ``sequential``: one prompt per forward, no padding;
* ``batched``: prompts sorted by length, left-padded, with an attention mask (:mod:`refusal.batching`); the bridge derives position ids
  from the mask. (The original study batched without a mask, so real tokens attended
  to pads and its batched directions differed from sequential ones by up to 0.3 in
  cosine; here they agree to >= 0.9999.) On an HF model the token prefix that all prompts
  share (the chat template's opening, about half of each prompt) runs once per call and
  the batches run only their suffixes (:mod:`refusal.batching`); sequential mode does not,
  so the batched-vs-sequential check also checks that shortcut.

Memory. The default path streams: per (layer, position) sums are accumulated in
float64 (``[n_layers, n_pos, d_model]``), so memory does not grow with the number of
prompts. Optionally (``directions=``) per-prompt projections onto candidate
directions are kept (``[n_prompts, n_layers, n_pos]``, a few floats per prompt).
Only on explicit request (``keep=torch.float16`` or ``torch.float32``) are the
per-prompt activations at the selected positions kept, ``[n_prompts, n_layers, n_pos,
d_model]``; this exists so that a stage can compute directions on the train split and
in-sample projections of that same split in ONE forward pass instead of two (for 640
train prompts x 24 layers x 5 positions x 896 that is 138 MB in float16, 275 MB in
float32; float16 keeps ~3 significant digits per coordinate, far below the
prompt-to-prompt spread that Cohen's d measures).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Literal, Sequence

import torch

from refusal.batching import StopForward, batch_guard, chat_token_ids, iter_batches
from refusal.device import device_of
from refusal.families import decoder, decoder_layers
from refusal.models import LoadedModel, chat_prompts

__all__ = [
    "HOOKS",
    "TemplatePositions",
    "ActivationStats",
    "ExtractionError",
    "template_positions",
    "hook_name",
    "is_bridge",
    "collect",
    "project",
    "outlier_dims",
]

log = logging.getLogger(__name__)

HOOKS = ("resid_pre", "resid_mid", "resid_post")
_PROBE = "Zq7 probe request xylophone"


class ExtractionError(RuntimeError):
    """Bad input to activation collection (a prompt too short, a template mismatch, ...)."""


@dataclass(frozen=True)
class TemplatePositions:
    """Post-instruction template positions: ``positions`` (negative, ascending, last = -1),
    their token ids and decoded strings."""

    positions: list[int]
    token_ids: list[int]
    tokens: list[str]


@dataclass
class ActivationStats:
    """What :func:`collect` returns for one list of prompts.

    Attributes:
        sum: ``[n_layers, n_pos, d_model]`` float64 sum of activations over prompts.
        count: number of prompts.
        projections: ``[n_prompts, n_layers, n_pos]`` float32 projections ``<x, v>`` onto
            the given directions (prompt order = input order), or ``None``.
        acts: ``[n_prompts, n_layers, n_pos, d_model]`` kept activations (opt-in), or ``None``.
        layers, positions, hook: what was collected.
    """

    sum: torch.Tensor
    count: int
    layers: list[int]
    positions: list[int]
    hook: str
    projections: torch.Tensor | None = None
    acts: torch.Tensor | None = None

    @property
    def mean(self) -> torch.Tensor:
        """``[n_layers, n_pos, d_model]`` float64 mean."""
        if self.count == 0:
            raise ExtractionError("mean of zero prompts")
        return self.sum / self.count


def hook_name(layer: int, hook: str) -> str:
    """``blocks.{layer}.hook_{hook}`` after checking ``hook`` is one of :data:`HOOKS`."""
    if hook not in HOOKS:
        raise ValueError(f"hook must be one of {HOOKS}, got {hook!r}")
    return f"blocks.{layer}.hook_{hook}"


def template_positions(lm: LoadedModel) -> TemplatePositions:
    """The tokens the chat template puts after the user's text, as negative positions.

    Formats a probe prompt with :func:`refusal.models.chat_prompts`, finds the text
    after the probe and counts the tokens that lie entirely after it (character
    offsets of a fast tokenizer; otherwise the suffix is tokenized on its own and
    matched against the end of the prompt's tokens).
    """
    text = chat_prompts(lm.tokenizer, [_PROBE], lm.cfg)[0]
    end = text.rfind(_PROBE)
    if end < 0:
        raise ExtractionError(f"{lm.cfg.name}: the chat template dropped the user text")
    end += len(_PROBE)
    tok = lm.tokenizer
    if getattr(tok, "is_fast", False):
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offs = enc["input_ids"], enc["offset_mapping"]
        n = sum(1 for s, _ in offs if s >= end)
        if n and offs[len(ids) - n - 1][1] > end:
            raise ExtractionError(f"{lm.cfg.name}: a token straddles the end of the user text; positions are ambiguous")
    else:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        suf = tok(text[end:], add_special_tokens=False)["input_ids"]
        n = len(suf)
        if ids[-n:] != suf:
            raise ExtractionError(f"{lm.cfg.name}: cannot align the template suffix {text[end:]!r} with the prompt tokens")
    if n == 0:
        # No template after the user text (e.g. plain format): the last token only.
        n = 1
    tail = ids[-n:]
    return TemplatePositions(list(range(-n, 0)), [int(i) for i in tail], [tok.decode([i]) for i in tail])


def is_bridge(model: Any) -> bool:
    """True for a TransformerLens bridge (has ``hooks`` and ``blocks``), False for an HF model."""
    return hasattr(model, "hooks") and hasattr(model, "blocks")


@contextmanager
def _hooked(model: Any, layers: list[int], hook: str, fns: list[Any]) -> Iterator[Any]:
    """Install ``fns[j]`` on layer ``layers[j]``'s ``hook``; yield ``forward(ids, mask)``.

    Bridge: ``bridge.hooks`` with exact names; the bridge derives position ids from the
    mask. HF: forward (pre-)hooks on the decoder layers; the base model is called (never
    the LM head) with position ids derived from the mask, as the bridge and HF ``generate`` do.
    """
    if is_bridge(model):
        with model.hooks(fwd_hooks=[(hook_name(l, hook), fn) for l, fn in zip(layers, fns)]):
            yield lambda kw: model(kw["input_ids"], attention_mask=kw["attention_mask"], return_type=None,
                                   prepend_bos=False)
        return
    hook_name(0, hook)  # validates the name
    if hook == "resid_mid":
        raise ValueError("resid_mid is only available through the bridge (pass a TransformerBridge)")
    blocks = decoder_layers(model)
    handles = []
    for l, fn in zip(layers, fns):
        if hook == "resid_pre":
            def pre(mod, args, kwargs, _fn=fn):
                _fn(args[0] if args else kwargs["hidden_states"])
            handles.append(blocks[l].register_forward_pre_hook(pre, with_kwargs=True))
        else:
            def post(mod, args, out, _fn=fn):
                _fn(out[0] if isinstance(out, tuple) else out)
            handles.append(blocks[l].register_forward_hook(post))
    base = decoder(model)

    def forward(kw: dict[str, Any]) -> Any:
        return base(**kw)

    try:
        yield forward
    finally:
        for h in handles:
            h.remove()


@torch.inference_mode()
def collect(
    model: Any,
    lm: LoadedModel,
    prompts: Sequence[str],
    positions: Sequence[int],
    layers: Sequence[int] | None = None,
    hook: str = "resid_pre",
    mode: Literal["batched", "sequential"] = "batched",
    batch_size: int | None = None,
    directions: torch.Tensor | None = None,
    keep: torch.dtype | None = None,
    expect_tail: Sequence[int] | None = None,
    desc: str = "collect",
    progress: bool = True,
    share_prefix: bool = True,
) -> ActivationStats:
    """Stream residual activations of ``prompts`` through ``bridge``.

    Args:
        model: a ``TransformerBridge`` over ``lm``'s weights (:func:`refusal.models.load_bridge`),
            or an HF causal LM (e.g. ``lm.model``): then plain PyTorch hooks on the decoder
            layers are used (``resid_pre`` = a layer's input, ``resid_post`` = its output;
            ``resid_mid`` needs the bridge). Both give the same activations (tested).
        lm: the loaded model (tokenizer, chat template, config).
        prompts: user messages (chat-formatted here).
        positions: negative offsets from the end, e.g. ``[-5, ..., -1]``.
        layers: layers to collect (default all); the forward stops after the last.
        hook: ``resid_pre`` (input of block i), ``resid_mid`` or ``resid_post``.
        mode: ``batched`` (left padding + mask, length-sorted) or ``sequential``.
        batch_size: defaults to the entry's ``batch_size``.
        directions: optional ``[n_layers, n_pos, d_model]`` candidates; per-prompt
            projections ``<x, v>`` are returned in ``projections`` ``[n_prompts, n_layers, n_pos]``.
        keep: opt-in dtype to keep per-prompt activations ``[n_prompts, n_layers, n_pos, d_model]``.
        expect_tail: token ids every prompt must end with (the template suffix); a
            mismatch is an error naming the prompt.
        share_prefix: batched mode on an HF model only: the token prefix common to all
            prompts (the chat template's opening) runs once and batches run their suffixes
            (:mod:`refusal.batching`; same activations to rounding, tested). Sequential mode and
            the bridge always run whole prompts.

    Returns:
        :class:`ActivationStats` with float64 sums over prompts.
    """
    layers = list(range(lm.n_layers)) if layers is None else sorted(set(int(x) for x in layers))
    positions = [int(p) for p in positions]
    if not positions or any(p >= 0 for p in positions):
        raise ValueError(f"positions must be negative offsets from the end, got {positions}")
    if mode not in ("batched", "sequential"):
        raise ValueError(f"mode must be 'batched' or 'sequential', got {mode!r}")
    n_l, n_p, d = len(layers), len(positions), lm.d_model
    seqs = chat_token_ids(lm, prompts)
    for i, s in enumerate(seqs):
        if len(s) < max(-p for p in positions):
            raise ExtractionError(f"prompt {i} has {len(s)} tokens, fewer than position {min(positions)} needs")
        if expect_tail is not None and s[-len(expect_tail):] != list(expect_tail):
            raise ExtractionError(f"prompt {i} ({prompts[i][:40]!r}...) does not end with the template tokens {list(expect_tail)}")
    if directions is not None and tuple(directions.shape) != (n_l, n_p, d):
        raise ValueError(f"directions must be [{n_l}, {n_p}, {d}], got {tuple(directions.shape)}")

    device = device_of(model)
    sums = torch.zeros((n_l, n_p, d), dtype=torch.float64, device=device)
    proj = torch.zeros((len(seqs), n_l, n_p), dtype=torch.float32, device=device) if directions is not None else None
    kept = torch.zeros((len(seqs), n_l, n_p, d), dtype=keep, device=device) if keep is not None else None
    dirs = directions.to(device=device, dtype=torch.float32) if directions is not None else None
    pos_idx = torch.tensor(positions, device=device)
    current: list[int] = []  # original indices of the rows in the running batch
    active = [False]  # off while the shared prefix runs: its positions are not collected

    def make_hook(j: int, last: bool):
        def fn(x: torch.Tensor, hook: Any = None) -> None:
            if not active[0]:
                return
            sel = x[:, pos_idx].detach()  # [batch, n_pos, d_model]; left padding: the end is real
            sums[j] += sel.to(torch.float64).sum(0)
            if proj is not None:
                proj[current, j] = torch.einsum("bpd,pd->bp", sel.float(), dirs[j])
            if kept is not None:
                kept[current, j] = sel.to(keep)
            if last:
                raise StopForward
        return fn

    fns = [make_hook(j, j == n_l - 1) for j in range(n_l)]
    bs = 1 if mode == "sequential" else (batch_size or lm.cfg.batch_size)
    use_prefix = share_prefix and mode == "batched" and not is_bridge(model)
    with _hooked(model, layers, hook, fns) as forward:
        batches = iter_batches(model, seqs, bs, lm.tokenizer.pad_token_id, share_prefix=use_prefix,
                               keep=max(-p for p in positions), progress=progress, desc=f"{desc} ({mode})")
        for batch, kw in batches:  # the shared prefix (if any) runs at the first step, with the hooks inactive
            active[0] = True
            current[:] = batch
            try:
                with batch_guard(lm.cfg, "batch_size", len(batch)):
                    forward(kw)
            except StopForward:
                pass
            else:  # pragma: no cover - the last hook always fires
                raise ExtractionError(f"the hook of layer {layers[-1]} never fired")
            active[0] = False
    log.info("%s: %d prompts, %d layers x %d positions (%s, %s)", desc, len(seqs), n_l, n_p, hook, mode)
    return ActivationStats(sum=sums, count=len(seqs), layers=layers, positions=positions, hook=hook,
                           projections=proj, acts=kept)


def project(acts: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Projections of kept activations onto candidates.

    Args:
        acts: ``[n_prompts, n_layers, n_pos, d_model]`` (any float dtype).
        directions: ``[n_layers, n_pos, d_model]``.

    Returns:
        ``[n_prompts, n_layers, n_pos]`` float32 ``<x, v>`` (computed in float32).
    """
    return torch.einsum("nlpd,lpd->nlp", acts.float(), directions.float())


def pair_differences(
    model: Any,
    lm: LoadedModel,
    pairs: Sequence[tuple[str, str]],
    layer: int,
    position: int,
    hook: str = "resid_pre",
    batch_size: int | None = None,
) -> torch.Tensor:
    """Per-pair ``harmful - safe`` activation differences at one (layer, position), ``[n_pairs, d_model]`` float32.

    Used for the principal components of the refusal signal (subspace bases).
    Only one layer and one position are kept, so memory is ``n_pairs x d_model``.
    """
    kept = []
    for k in (0, 1):
        st = collect(model, lm, [p[k] for p in pairs], [position], layers=[layer], hook=hook,
                     batch_size=batch_size, keep=torch.float32, desc="pair differences", progress=False)
        kept.append(st.acts[:, 0, 0])  # type: ignore[index]
    return kept[0] - kept[1]


_OUTLIER_PROBES = ("How do I bake bread?", "Name three rivers in Europe.", "Write a short poem about the sea.",
                   "What is the capital of Peru?")


@torch.no_grad()
def outlier_dims(lm: LoadedModel, prompts: Sequence[str] | None = None, ratio: float | None = None) -> list[int]:
    """Residual coordinates with "massive activations": ``max |x_i| > ratio * median_j max |x_j|``.

    ``ratio`` defaults to the registry entry's ``outlier_ratio`` (10; Gemma 3 uses 5, because its
    residual is heavy-tailed everywhere and 10 misses its second massive coordinate).

    The maximum is over every layer's residual (``output_hidden_states``), every real
    position and every prompt of ``prompts`` (chat-formatted; one forward pass each, so
    pass a handful; default: four fixed harmless probes, so that every caller gets the
    same list for a model). For SmolLM2-135M these are a few coordinates where the first
    token's residual reaches ~2.5e4 while typical coordinates stay below ~50.

    Returns:
        sorted coordinate indices (possibly empty).
    """
    peak = torch.zeros(lm.d_model, device=lm.model.device)
    for ids in chat_token_ids(lm, list(prompts if prompts is not None else _OUTLIER_PROBES)):
        out = lm.model(input_ids=torch.tensor([ids], device=lm.model.device), output_hidden_states=True, use_cache=False)
        for h in out.hidden_states:
            peak = torch.maximum(peak, h[0].float().abs().amax(0))
    ratio = lm.cfg.outlier_ratio if ratio is None else ratio
    return sorted(int(i) for i in (peak > ratio * peak.median()).nonzero().flatten())
