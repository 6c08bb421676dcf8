"""Shared-prefix forward passes: the chat template's common opening is computed once per call.

Every chat-formatted prompt of a model starts with the same tokens (system prompt and user header:
about 25 tokens for Qwen2.5 and SmolLM2, half of a typical prompt of ours). :func:`shared_prefix`
finds the longest token prefix common to all the prompts of a call; :func:`prefix_cache` runs it once,
under whatever hooks are active on the model (an ablation is position-wise, so it applies to the prefix
exactly as in a full pass), and :func:`suffix_inputs` builds, for each batch, the inputs that run only
the suffixes: left padded *after* the prefix, an attention mask that hides the padding, position ids
that skip it, and a copy of the prefix's keys and values repeated over the batch. The result equals the
full left-padded forward pass to float rounding (``tests/test_prefix.py``), at the cost of the suffixes.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import torch
from transformers import DynamicCache

__all__ = ["left_pad", "mask_positions", "sliding_window", "supports_prefix", "shared_prefix", "prepare", "prefix_cache",
           "suffix_inputs", "batch_inputs", "MIN_PREFIX"]

MIN_PREFIX = 4  # a shorter common prefix is not worth a separate pass


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)``, both ``[batch, max_len]``, left padded."""
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, n - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[r, n - len(s):] = 1
    return ids, mask


def mask_positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids ``[b, n]`` that count only the real (mask 1) tokens of ``mask [b, n]``, as HF ``generate`` does."""
    return (mask.long().cumsum(-1) - 1).clamp_min(0)


def sliding_window(config: Any) -> int | None:
    """The attention window of a model that uses sliding-window layers (Gemma 2/3, Mistral, Phi-3), else None."""
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if types:
        return window if "sliding_attention" in types else None
    return window if getattr(config, "use_sliding_window", True) else None


def supports_prefix(model: Any, span: int | None = None) -> bool:
    """Whether a shared-prefix pass over ``model`` (an HF causal LM) equals the whole-prompt pass.

    It needs a decoder that takes a ``cache`` argument (transformers >= 5; remote-code models with
    their own cache format, Qwen-1, run whole prompts). With sliding-window layers the window counts
    cache slots, padding included, so it also needs ``span`` (prefix + padded suffix + new tokens)
    to fit in the window.
    """
    base = getattr(model, "model", model)
    if not all("cache" in inspect.signature(m.forward).parameters for m in (model, base)):
        return False
    window = sliding_window(base.config)
    return window is None or (span is not None and span <= window)


def shared_prefix(seqs: list[list[int]], keep: int = 1) -> int:
    """Length of the token prefix shared by every sequence, leaving at least ``keep`` tokens in each.

    Returns 0 when that prefix is shorter than :data:`MIN_PREFIX` (or for fewer than 2 sequences:
    there is nothing to share).
    """
    if len(seqs) < 2:
        return 0
    n = min(len(s) for s in seqs) - keep
    first = seqs[0]
    i = 0
    while i < n and all(s[i] == first[i] for s in seqs):
        i += 1
    return i if i >= MIN_PREFIX else 0


def prepare(model: Any, seqs: list[list[int]], keep: int = 1, new_tokens: int = 0,
            enabled: bool = True) -> tuple[int, DynamicCache | None]:
    """``(n_pre, cache)`` for a call over ``seqs``: the shared prefix length and its keys/values.

    ``(0, None)`` (run whole prompts) when disabled, when the prefix is too short
    (:func:`shared_prefix`, leaving ``keep`` tokens in each sequence), or when the model does not
    support it for a span of prefix + padded suffix + ``new_tokens`` (:func:`supports_prefix`).
    Active hooks on the model fire on the prefix pass.
    """
    if not enabled or len(seqs) < 2:
        return 0, None
    span = 2 * max(map(len, seqs)) + new_tokens  # >= prefix + longest padded suffix + new tokens
    n_pre = shared_prefix(seqs, keep) if supports_prefix(model, span) else 0
    return (n_pre, prefix_cache(model, seqs[0][:n_pre])) if n_pre else (0, None)


@torch.inference_mode()
def prefix_cache(model: Any, prefix: list[int]) -> DynamicCache:
    """Keys and values of ``prefix`` (batch 1) from the decoder of ``model`` (an HF causal LM or its base).

    Active hooks on the decoder layers fire on the prefix positions too.
    """
    base = getattr(model, "model", model)
    cache = DynamicCache(config=base.config)
    device = next(base.parameters()).device
    base(input_ids=torch.tensor([prefix], device=device), cache=cache, use_cache=True)
    return cache


def suffix_inputs(cache: DynamicCache, prefix_len: int, suffixes: list[list[int]], pad_id: int,
                  device: torch.device | str = "cpu") -> dict[str, Any]:
    """Forward kwargs that run ``suffixes`` after the cached prefix.

    Returns ``input_ids [b, s]`` (left padded), ``attention_mask [b, prefix_len + s]`` (ones on the
    prefix, zeros on the padding), ``position_ids [b, s]`` (counting real tokens only, from
    ``prefix_len``) and ``cache`` (a copy of ``cache`` repeated ``b`` times: the forward pass
    appends to it, the shared one stays intact).
    """
    ids, mask = left_pad(suffixes, pad_id)
    b = len(suffixes)
    full = torch.cat([torch.ones((b, prefix_len), dtype=mask.dtype), mask], dim=1)
    pos = mask_positions(full)[:, prefix_len:]
    kv = copy.deepcopy(cache)
    kv.batch_repeat_interleave(b)
    return {"input_ids": ids.to(device), "attention_mask": full.to(device), "position_ids": pos.to(device),
            "cache": kv, "use_cache": True}


def batch_inputs(seqs: list[list[int]], n_pre: int, cache: DynamicCache | None, pad_id: int,
                 device: torch.device | str = "cpu") -> dict[str, Any]:
    """Forward kwargs for one batch of token sequences that share their first ``n_pre`` tokens.

    With a prefix ``cache`` (:func:`prefix_cache`): the suffixes after it (:func:`suffix_inputs`).
    Without: the whole sequences, left padded, with position ids counted from the mask (as HF
    ``generate`` does), ``input_ids``/``attention_mask``/``position_ids`` all ``[b, max_len]``.
    """
    if cache is not None:
        return suffix_inputs(cache, n_pre, [s[n_pre:] for s in seqs], pad_id, device)
    ids, mask = left_pad(seqs, pad_id)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device),
            "position_ids": mask_positions(mask).to(device), "use_cache": False}
