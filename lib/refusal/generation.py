"""Batched greedy generation with HF ``generate`` (KV cache), correct masks and stop tokens.

Prompts are chat-formatted, sorted by length (less padding), left-padded with an attention mask
(:mod:`refusal.batching`), decoded greedily and stopped at the model's end-of-turn tokens; results come back
in the caller's order. Decoding is plain greedy whatever the checkpoint's ``generation_config`` says (some hub
models ship sampling settings and a repetition penalty: Qwen-1-Chat's is 1.1). Any forward hooks that are
active on the model (e.g. a runtime ablation set through the bridge or :mod:`refusal.intervention.ablation`)
apply to every step, generated tokens included.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from refusal.batching import batch_guard, chat_token_ids, iter_batches, pad
from refusal.models import LoadedModel

__all__ = ["generate", "generate_ids", "tokenize_chat"]

log = logging.getLogger(__name__)


def tokenize_chat(lm: LoadedModel, prompts: list[str]) -> dict[str, torch.Tensor]:
    """Chat-format and tokenize prompts with left padding, on the model's device.

    Returns ``input_ids`` and ``attention_mask``, both ``[batch, pos]``; the last position of every row is the
    prompt's last token.
    """
    ids, mask = pad(chat_token_ids(lm, prompts), lm.tokenizer.pad_token_id, device=lm.model.device)
    return {"input_ids": ids, "attention_mask": mask}


def _cut_at_stop(ids: list[int], stop: list[int]) -> list[int]:
    """``ids`` up to and including the first stop token (the padding generate adds after it is dropped)."""
    for j, t in enumerate(ids):
        if t in stop:
            return ids[: j + 1]
    return ids


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
        chat: apply the chat template (``False`` for raw text, tokenized with the tokenizer's special tokens).
        share_prefix: compute the token prefix common to all prompts (the chat template's
            opening) once and start every batch from a copy of its keys and values
            (:mod:`refusal.batching`); same greedy tokens (tested), less prefill.

    Returns:
        For each prompt, the generated ids up to and including the first stop
        token (padding removed).
    """
    model = model if model is not None else lm.model
    max_new_tokens = max_new_tokens or lm.cfg.max_new_tokens
    batch_size = batch_size or lm.cfg.gen_batch_size
    if not prompts:
        return []
    seqs = chat_token_ids(lm, prompts) if chat else [list(x) for x in lm.tokenizer(list(prompts))["input_ids"]]
    stop = lm.stop_ids()
    pad_id = lm.tokenizer.pad_token_id
    out: list[list[int]] = [[] for _ in prompts]
    for idx, enc in iter_batches(model, seqs, batch_size, pad_id, share_prefix=share_prefix, new_tokens=max_new_tokens,
                                 generate=True, progress=progress, desc=desc):
        with batch_guard(lm.cfg, "gen_batch_size", len(idx)):
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None,
                                 top_k=None, repetition_penalty=1.0, eos_token_id=stop, pad_token_id=pad_id,
                                 use_cache=True)
        new = gen[:, enc["input_ids"].shape[1]:].tolist()
        for row, i in enumerate(idx):
            out[i] = _cut_at_stop(new[row], stop)
    return out


def generate(lm: LoadedModel, prompts: list[str], max_new_tokens: int | None = None, batch_size: int | None = None,
             model: Any = None, chat: bool = True, progress: bool = True, desc: str = "generate",
             share_prefix: bool = True) -> list[str]:
    """Greedy completions of ``prompts`` as text (special tokens removed, stripped), in input order.

    Same arguments as :func:`generate_ids`.
    """
    ids = generate_ids(lm, prompts, max_new_tokens, batch_size, model, chat, progress, desc, share_prefix)
    return [lm.tokenizer.decode(x, skip_special_tokens=True).strip() for x in ids]
