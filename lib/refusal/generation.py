"""Batched greedy generation with HF ``generate`` (KV cache), correct masks and stop tokens.

Prompts are chat-formatted, sorted by length (less padding), left-padded with
an attention mask, decoded greedily and stopped at the model's end-of-turn
tokens; results come back in the caller's order. Any forward hooks that are
active on the model (e.g. a runtime ablation set through the bridge or
:mod:`refusal.ablation`) apply to every step, generated tokens included.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from tqdm.auto import tqdm

from refusal.models import LoadedModel
from refusal.prefix import left_pad, prepare, suffix_inputs

__all__ = ["generate", "generate_ids", "tokenize_chat", "length_sorted_batches"]

log = logging.getLogger(__name__)


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def tokenize_chat(lm: LoadedModel, prompts: list[str], chat: bool = True) -> dict[str, torch.Tensor]:
    """Chat-format and tokenize prompts with left padding.

    Returns ``input_ids`` and ``attention_mask``, both ``[batch, pos]``; the
    last position of every row is the prompt's last token.
    """
    texts = lm.chat(prompts) if chat else prompts
    enc = lm.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not chat)
    return {k: v.to(lm.model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}


@torch.inference_mode()
def generate_ids(
    lm: LoadedModel,
    prompts: list[str],
    max_new_tokens: int | None = None,
    batch_size: int | None = None,
    model: Any = None,
    chat: bool = True,
    progress: bool = True,
    desc: str = "generate",
    share_prefix: bool = True,
) -> list[list[int]]:
    """Greedy new-token ids of each prompt (list of user messages), in input order.

    Args:
        lm: the loaded model (its tokenizer, config and stop tokens are used).
        max_new_tokens: defaults to the entry's ``max_new_tokens``.
        batch_size: defaults to the entry's ``gen_batch_size``.
        model: the module to call ``generate`` on (default ``lm.model``; pass
            ``bridge.original_model`` to generate under bridge hooks).
        chat: apply the chat template (``False`` for raw text).
        share_prefix: compute the token prefix common to all prompts (the chat template's
            opening) once and start every batch from a copy of its keys and values
            (:mod:`refusal.prefix`); same greedy tokens (tested), less prefill.

    Returns:
        For each prompt, the generated ids up to and including the first stop
        token (padding removed).
    """
    model = model if model is not None else lm.model
    max_new_tokens = max_new_tokens or lm.cfg.max_new_tokens
    batch_size = batch_size or lm.cfg.gen_batch_size
    if not prompts:
        return []
    texts = lm.chat(prompts) if chat else list(prompts)
    seqs = [list(x) for x in lm.tokenizer(texts, add_special_tokens=not chat)["input_ids"]]
    n_pre, cache = prepare(model, seqs, new_tokens=max_new_tokens, enabled=share_prefix)
    stop = lm.stop_ids()
    device = lm.model.device
    out: list[list[int]] = [[] for _ in prompts]
    for idx in tqdm(length_sorted_batches([len(s) for s in seqs], batch_size), desc=desc, disable=not progress, leave=False):
        if cache is not None:  # [prefix | padding | suffix]: the mask hides the padding, positions skip it
            kw = suffix_inputs(cache, n_pre, [seqs[i][n_pre:] for i in idx], lm.tokenizer.pad_token_id, device)
            prefix = torch.tensor(seqs[idx[0]][:n_pre], device=device).expand(len(idx), n_pre)
            enc = {"input_ids": torch.cat([prefix, kw["input_ids"]], dim=1), "attention_mask": kw["attention_mask"],
                   "cache": kw["cache"]}
        else:
            ids, mask = left_pad([seqs[i] for i in idx], lm.tokenizer.pad_token_id)
            enc = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
        gen = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            eos_token_id=stop,
            pad_token_id=lm.tokenizer.pad_token_id,
            use_cache=True,
        )
        new = gen[:, enc["input_ids"].shape[1] :].tolist()
        for row, i in enumerate(idx):
            ids = new[row]
            for j, t in enumerate(ids):
                if t in stop:
                    ids = ids[: j + 1]
                    break
            out[i] = ids
    return out


def generate(lm: LoadedModel, prompts: list[str], max_new_tokens: int | None = None, batch_size: int | None = None,
             model: Any = None, chat: bool = True, progress: bool = True, desc: str = "generate",
             share_prefix: bool = True) -> list[str]:
    """Greedy completions of ``prompts`` as text (special tokens removed, stripped), in input order.

    Same arguments as :func:`generate_ids`.
    """
    ids = generate_ids(lm, prompts, max_new_tokens, batch_size, model, chat, progress, desc, share_prefix)
    return [lm.tokenizer.decode(x, skip_special_tokens=True).strip() for x in ids]
