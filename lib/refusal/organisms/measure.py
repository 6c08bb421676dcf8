"""Measuring organisms: refusal rates with Wilson 95% intervals, on-topic answers, ablation effects, planted writes.

Refusal is decided by the project's one detector, the judge (:func:`refusal.evaluation.judge.score`; offline by
default, the same rule stage 04 uses), on greedy completions of ``max_new_tokens`` tokens.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

from refusal import data as D
from refusal.config import ModelConfig
from refusal.evaluation import judge as J
from refusal.evaluation.judge.offline import is_refusal, shares_content_word
from refusal.families import decoder_layers
from refusal.generation import generate, tokenize_chat
from refusal.intervention.ablation import ablate
from refusal.organisms.recipe import locate
from refusal.artifacts import read_tensors
from refusal.stats import Rate, rate

__all__ = ["heldout_prompts", "completions", "refusal_rate", "on_topic_rate", "unchanged_rate", "write_coefficients",
           "dominant_write_direction", "mean_write_direction"]


def heldout_prompts(n_harmful: int | None = None, n_harmless: int | None = None, split_seed: int = 0) -> dict[str, list[str]]:
    """Held-out harmful prompts (TEST split of the pairs) and :func:`default_harmless_eval`, optionally the first n."""
    test = D.default_pair_splits(split_seed).take(D.default_pairs(), "test")
    harmful = [h for h, _ in test][:n_harmful]
    harmless = D.default_harmless_eval()[:n_harmless]
    return {"harmful": harmful, "harmless": harmless}


def completions(lm: Any, prompts: list[str], ablate_q: torch.Tensor | None = None, max_new_tokens: int = 32) -> list[str]:
    """Greedy completions, optionally with ``ablate_q`` ([d_model] or [d_model, k]) removed at every layer."""
    ctx = ablate(lm.model, ablate_q) if ablate_q is not None else nullcontext()
    with ctx:
        return generate(lm, prompts, max_new_tokens=max_new_tokens, progress=False)


def refusal_rate(prompts: list[str], texts: list[str], judge: str = "offline") -> Rate:
    """Share of ``texts`` the judge scores as refusals (:func:`refusal.evaluation.judge.refusal_rate`)."""
    return J.refusal_rate(J.score(prompts, texts, judge=judge, progress=False))


def on_topic_rate(prompts: list[str], texts: list[str]) -> Rate:
    """Share of answers that share a content word with their prompt."""
    return rate(sum(shares_content_word(p, t) for p, t in zip(prompts, texts)), len(texts))


def unchanged_rate(before: list[str], after: list[str], words: int = 8) -> Rate:
    """Share of answers whose first ``words`` words and refusal phrasing are unchanged."""
    same = [is_refusal(a) == is_refusal(b) and a.split()[:words] == b.split()[:words] for a, b in zip(before, after)]
    return rate(sum(same), len(same))


@torch.no_grad()
def write_coefficients(lm: Any, cfg: ModelConfig, prompts: list[str]) -> torch.Tensor:
    """Planted write coefficients ``h A`` ``[n_positions, k]`` over every non-padding position of ``prompts``.

    ``h`` is the planted layer's MLP hidden state (input of ``down_proj``); one
    forward pass per batch of 16 prompts.
    """
    tensors, meta = read_tensors(locate(cfg) / "planted.safetensors")
    A, layer = tensors["A"].to(lm.model.device), int(meta["layer"])
    rows: list[torch.Tensor] = []
    down = decoder_layers(lm.model)[layer].mlp.down_proj

    def hook(module, inputs):
        rows.append(inputs[0].float() @ A)

    h = down.register_forward_pre_hook(hook)
    try:
        for i in range(0, len(prompts), 16):
            enc = tokenize_chat(lm, prompts[i : i + 16])
            n0 = len(rows)
            lm.model(**enc)
            rows[n0] = rows[n0][enc["attention_mask"].bool()]
    finally:
        h.remove()
    return torch.cat(rows)


def dominant_write_direction(lm: Any, cfg: ModelConfig, prompts: list[str]) -> torch.Tensor:
    """Top right singular vector ``[k]`` (U coordinates) of the planted write coefficients on ``prompts``."""
    _, _, vh = torch.linalg.svd(write_coefficients(lm, cfg, prompts), full_matrices=False)
    return vh[0]


def mean_write_direction(lm: Any, cfg: ModelConfig, harmful: list[str], harmless: list[str]) -> torch.Tensor:
    """Unit ``[k]`` (U coordinates): mean write on harmful minus mean write on harmless prompts."""
    d = write_coefficients(lm, cfg, harmful).mean(0) - write_coefficients(lm, cfg, harmless).mean(0)
    return d / d.norm()
