"""Fast refusal signals from one forward pass: refusal-token log-odds and next-token KL.

The refusal score of a prompt is the log-odds that the model's first
generated token is one of its *refusal-starting tokens*:
``log p / (1 - p)`` with ``p = sum_{t in T} softmax(logits_last)[t]``.
``T`` is derived from the model's own refusals (:func:`refusal_tokens`): the
first tokens of its refusing answers on the train split, not a hand-written
list per family. One forward pass per batch, no generation: this is what
makes scoring hundreds of (layer, position) candidates affordable.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable

import torch
import torch.nn.functional as F

from refusal.batching import batch_guard, chat_token_ids, iter_batches
from refusal.generation import generate_ids
from refusal.models import LoadedModel

__all__ = ["refusal_tokens", "last_logprobs", "refusal_score", "kl_last", "mean_first_token_kl"]

log = logging.getLogger(__name__)


def refusal_tokens(
    lm: LoadedModel,
    harmful_prompts: list[str],
    is_refusal: Callable[[str], bool],
    max_new_tokens: int = 24,
    min_share: float = 0.05,
    fallback: list[str] | None = None,
) -> tuple[list[int], dict]:
    """Refusal-starting token ids, from the model's own refusals.

    Generates greedy answers to ``harmful_prompts``, keeps those that
    ``is_refusal`` flags, and returns the first generated token ids that start
    at least ``min_share`` of the refusals. If the model refuses none (a
    non-refusing control), the first tokens of ``fallback`` texts are used and
    the record says so.

    Returns:
        (token ids, record with counts, the decoded tokens and the source).
    """
    ids = generate_ids(lm, harmful_prompts, max_new_tokens=max_new_tokens, progress=True, desc="refusal tokens")
    texts = [lm.tokenizer.decode(x, skip_special_tokens=True) for x in ids]
    firsts = Counter(x[0] for x, t in zip(ids, texts) if x and is_refusal(t))
    n_ref = sum(firsts.values())
    if n_ref:
        toks = [t for t, c in firsts.most_common() if c / n_ref >= min_share]
        source = "model refusals"
    else:
        toks = sorted({lm.tokenizer(f, add_special_tokens=False)["input_ids"][0] for f in (fallback or ["I'm sorry"])})
        source = "fallback (the model refused none of the prompts)"
    rec = {
        "source": source,
        "n_prompts": len(harmful_prompts),
        "n_refusals": n_ref,
        "tokens": [{"id": int(t), "text": lm.tokenizer.decode([t]), "count": int(firsts.get(t, 0))} for t in toks],
    }
    log.info("refusal tokens (%s): %s", source, [d["text"] for d in rec["tokens"]])
    return [int(t) for t in toks], rec


@torch.inference_mode()
def last_logprobs(lm: LoadedModel, prompts: list[str], batch_size: int | None = None, progress: bool = False,
                  share_prefix: bool = True) -> torch.Tensor:
    """Log-probabilities of the first generated token, ``[n_prompts, vocab]`` (float32, input order).

    Chat-formatted, left-padded batches with an attention mask; any active
    hooks on ``lm.model`` apply. With ``share_prefix`` the token prefix common to
    all prompts (the chat template's opening) runs once and each batch runs only
    its suffixes (:mod:`refusal.batching`); the result is the same to rounding.
    """
    batch_size = batch_size or lm.cfg.batch_size
    seqs = chat_token_ids(lm, prompts)
    out: list[torch.Tensor | None] = [None] * len(prompts)
    for idx, enc in iter_batches(lm.model, seqs, batch_size, lm.tokenizer.pad_token_id, share_prefix=share_prefix,
                                 progress=progress, desc="first-token log-probs"):
        with batch_guard(lm.cfg, "batch_size", len(idx)):
            logits = lm.model(**enc, logits_to_keep=1).logits[:, -1, :].float()
        lp = F.log_softmax(logits, dim=-1)
        for row, i in enumerate(idx):
            out[i] = lp[row]
    return torch.stack(out)  # type: ignore[arg-type]


def refusal_score(logprobs: torch.Tensor, tokens: list[int]) -> torch.Tensor:
    """Log-odds of the refusal tokens, ``[n_prompts]``, from ``logprobs [n_prompts, vocab]``."""
    lp = torch.logsumexp(logprobs[:, tokens], dim=-1).clamp(max=-1e-7)
    return lp - torch.log(-torch.expm1(lp))


def kl_last(base: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """KL(base || other) per prompt, ``[n_prompts]``, from two ``[n_prompts, vocab]`` log-prob tensors."""
    return (base.exp() * (base - other)).sum(dim=-1)


def mean_first_token_kl(lm: LoadedModel, base: torch.Tensor, prompts: list[str]) -> float:
    """Mean first-token KL(base || now) over ``prompts``; ``base`` ``[n, vocab]`` are their log-probs without intervention."""
    return kl_last(base, last_logprobs(lm, prompts)).mean().item()
