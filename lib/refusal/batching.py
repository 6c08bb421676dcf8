"""Batching, written once: tokenize, sort by length, pad, share the prefix, run, restore the order.

Every loop over prompts in this project (extraction, first-token scoring, generation, capability signals,
organism training) goes through this module:

- :func:`chat_token_ids`: chat-format user prompts and tokenize them, one list of ids per prompt;
- :func:`length_sorted_batches`: indices grouped into batches of similar length (longest first), so that
  padding stays small; results are written back at these indices, i.e. in the caller's order;
- :func:`pad`: ``(input_ids, attention_mask)`` padded on the left (inference: the last position of every
  row is the prompt's last token) or on the right (training: positions are a plain ``arange``);
- :func:`iter_batches`: the batches of one call as forward kwargs, with the shared prefix below;
- :class:`StopForward` / :func:`capture_input`: end a forward pass at the last module needed;
- :func:`batch_guard`: a batch that does not fit in memory becomes an error that names the registry entry and
  the knob to turn.

Shared prefix. Every chat-formatted prompt of a model starts with the same tokens (system prompt and user
header: about 25 tokens for Qwen2.5 and SmolLM2, half of a typical prompt of ours). :func:`shared_prefix`
finds the longest token prefix common to all the prompts of a call; :func:`prefix_cache` runs it once, under
whatever hooks are active on the model (an ablation is position-wise, so it applies to the prefix exactly as
in a full pass), and :func:`suffix_inputs` builds, for each batch, the inputs that run only the suffixes:
left padded *after* the prefix, an attention mask that hides the padding, position ids that skip it, and a
copy of the prefix's keys and values repeated over the batch. The result equals the full left-padded forward
pass to float rounding (``tests/test_prefix.py``), at the cost of the suffixes.
"""

from __future__ import annotations

import copy
import inspect
from contextlib import contextmanager
from typing import Any, Iterator, Literal

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache

from refusal.device import device_of
from refusal.families import decoder

__all__ = ["chat_token_ids", "length_sorted_batches", "pad", "mask_positions", "iter_batches", "StopForward",
           "capture_input", "BatchTooLarge", "batch_guard", "sliding_window", "supports_prefix", "shared_prefix",
           "prepare", "prefix_cache", "suffix_inputs", "batch_inputs", "MIN_PREFIX"]

MIN_PREFIX = 4  # a shorter common prefix is not worth a separate pass


def chat_token_ids(lm: Any, prompts: list[str]) -> list[list[int]]:
    """Chat-format user prompts (:meth:`refusal.models.LoadedModel.chat`) and tokenize each, no padding and no
    added special tokens (the template already holds them)."""
    if not prompts:
        return []
    return [list(x) for x in lm.tokenizer(lm.chat(list(prompts)), add_special_tokens=False)["input_ids"]]


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices ``0..n-1`` grouped into batches of similar length (longest first)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad(seqs: list[list[int]], pad_id: int, side: Literal["left", "right"] = "left",
        device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)``, both ``[batch, max_len]`` long, padded on ``side``."""
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for r, s in enumerate(seqs):
        cols = slice(n - len(s), n) if side == "left" else slice(0, len(s))
        ids[r, cols] = torch.tensor(s, dtype=torch.long)
        mask[r, cols] = 1
    return ids.to(device) if device is not None else ids, mask.to(device) if device is not None else mask


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
    base = decoder(model)
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
    base = decoder(model)
    cache = DynamicCache(config=base.config)
    device = next(base.parameters()).device
    base(input_ids=torch.tensor([prefix], device=device), cache=cache, use_cache=True)
    return cache


def suffix_inputs(cache: DynamicCache, prefix_len: int, suffixes: list[list[int]], pad_id: int,
                  device: torch.device | str | None = None) -> dict[str, Any]:
    """Forward kwargs that run ``suffixes`` after the cached prefix.

    Returns ``input_ids [b, s]`` (left padded), ``attention_mask [b, prefix_len + s]`` (ones on the
    prefix, zeros on the padding), ``position_ids [b, s]`` (counting real tokens only, from
    ``prefix_len``) and ``cache`` (a copy of ``cache`` repeated ``b`` times: the forward pass
    appends to it, the shared one stays intact).
    """
    ids, mask = pad(suffixes, pad_id)
    b = len(suffixes)
    full = torch.cat([torch.ones((b, prefix_len), dtype=mask.dtype), mask], dim=1)
    pos = mask_positions(full)[:, prefix_len:]
    kv = copy.deepcopy(cache)
    kv.batch_repeat_interleave(b)
    return {"input_ids": ids.to(device), "attention_mask": full.to(device), "position_ids": pos.to(device),
            "cache": kv, "use_cache": True}


def batch_inputs(seqs: list[list[int]], n_pre: int, cache: DynamicCache | None, pad_id: int,
                 device: torch.device | str | None = None) -> dict[str, Any]:
    """Forward kwargs for one batch of token sequences that share their first ``n_pre`` tokens.

    With a prefix ``cache`` (:func:`prefix_cache`): the suffixes after it (:func:`suffix_inputs`).
    Without: the whole sequences, left padded, with position ids counted from the mask (as HF
    ``generate`` does), ``input_ids``/``attention_mask``/``position_ids`` all ``[b, max_len]``.
    """
    if cache is not None:
        return suffix_inputs(cache, n_pre, [s[n_pre:] for s in seqs], pad_id, device)
    ids, mask = pad(seqs, pad_id)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device),
            "position_ids": mask_positions(mask).to(device), "use_cache": False}


def iter_batches(model: Any, seqs: list[list[int]], batch_size: int, pad_id: int, *, share_prefix: bool = True,
                 keep: int = 1, new_tokens: int = 0, generate: bool = False, progress: bool = False,
                 desc: str = "batches") -> Iterator[tuple[list[int], dict[str, Any]]]:
    """``(indices, forward kwargs)`` for each length-sorted batch of ``seqs`` (token id lists).

    The token prefix shared by all of ``seqs`` runs once first (:func:`prepare`; ``keep`` tokens stay in every
    suffix, ``new_tokens`` is the generation length the cache must hold), under the hooks active at that moment,
    unless ``share_prefix`` is off or the model cannot take it (:func:`supports_prefix`). The kwargs are those of
    :func:`batch_inputs` (a decoder forward pass: ``input_ids``, ``attention_mask``, ``position_ids``, and the
    copied ``cache`` when a prefix is shared); with ``generate`` they are those of HF ``generate`` instead
    (``input_ids`` of the whole prompts, ``attention_mask`` and the prefix ``cache``). Tensors are on the
    model's device.
    """
    if not seqs:
        return
    device = device_of(model)
    n_pre, cache = prepare(model, seqs, keep=keep, new_tokens=new_tokens, enabled=share_prefix)
    for idx in tqdm(length_sorted_batches([len(s) for s in seqs], batch_size), desc=desc, disable=not progress,
                    leave=False):
        rows = [seqs[i] for i in idx]
        if not generate:
            yield idx, batch_inputs(rows, n_pre, cache, pad_id, device)
        elif cache is not None:  # [prefix | padding | suffix]: the mask hides the padding, positions skip it
            kw = suffix_inputs(cache, n_pre, [s[n_pre:] for s in rows], pad_id, device)
            prefix = torch.tensor(rows[0][:n_pre], device=device).expand(len(idx), n_pre)
            yield idx, {"input_ids": torch.cat([prefix, kw["input_ids"]], dim=1),
                        "attention_mask": kw["attention_mask"], "cache": kw["cache"]}
        else:
            ids, mask = pad(rows, pad_id, device=device)
            yield idx, {"input_ids": ids, "attention_mask": mask}


class StopForward(Exception):
    """Raised by a hook to end a forward pass once everything needed has been read."""


def capture_input(run: Any, module: torch.nn.Module) -> torch.Tensor:
    """The first input of ``module`` during ``run()`` (a forward pass of a model holding ``module``).

    A pre-hook stores it and raises :class:`StopForward`: nothing after ``module`` is computed.
    """
    store: dict[str, torch.Tensor] = {}

    def hook(mod: Any, args: Any, kwargs: Any) -> None:
        store["x"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()
        raise StopForward

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        run()
    except StopForward:
        pass
    finally:
        handle.remove()
    if "x" not in store:
        raise RuntimeError(f"{type(module).__name__} was never called during the forward pass")
    return store["x"]


class BatchTooLarge(RuntimeError):
    """A batch does not fit in the device's memory; the message names the registry entry and the knob."""


@contextmanager
def batch_guard(cfg: Any, knob: str, n: int) -> Iterator[None]:
    """Turn an out-of-memory error of a batch of ``n`` into :class:`BatchTooLarge` naming ``cfg.path`` and ``knob``
    (e.g. ``batch_size`` or ``gen_batch_size`` in ``params/<model>.yaml``, or a stage parameter)."""
    try:
        yield
    except torch.OutOfMemoryError as e:
        where = getattr(cfg, "path", "") or f"params/{getattr(cfg, 'name', '?')}.yaml"
        raise BatchTooLarge(f"{where}: a batch of {n} does not fit in device memory; lower '{knob}' "
                            f"(now {n}) in {where} or pass a smaller batch size ({str(e).splitlines()[0][:160]})") from e
