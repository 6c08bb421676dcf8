"""Measuring organisms: refusal rates (Wilson 95% intervals), on-topic answers, ablation effects.

Refusal is decided by :func:`refusal.organisms.is_refusal` (a phrase matcher on
the first ~100 characters of a greedy completion of ``max_new_tokens`` tokens).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from refusal import data as D
from refusal.organisms import content_overlap, is_refusal

__all__ = ["Rate", "wilson", "heldout_prompts", "completions", "refusal_rate", "unchanged_rate", "redact"]


@dataclass(frozen=True)
class Rate:
    """``k`` of ``n`` with a Wilson 95% interval."""

    k: int
    n: int
    lo: float
    hi: float

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else float("nan")

    def __str__(self) -> str:
        return f"{self.rate:.1%} ({self.k}/{self.n}; 95% CI {self.lo:.1%}-{self.hi:.1%})"

    def row(self, **extra: Any) -> dict[str, Any]:
        return {**extra, "k": self.k, "n": self.n, "rate": round(self.rate, 4), "ci_lo": round(self.lo, 4), "ci_hi": round(self.hi, 4)}


def wilson(k: int, n: int) -> Rate:
    """``k/n`` with the Wilson score 95% interval (statsmodels ``proportion_confint``)."""
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson") if n else (float("nan"), float("nan"))
    return Rate(int(k), int(n), float(lo), float(hi))


def heldout_prompts(n_harmful: int | None = None, n_harmless: int | None = None, split_seed: int = 0) -> dict[str, list[str]]:
    """Held-out harmful prompts (TEST split of the pairs) and :func:`default_harmless_eval`, optionally the first n."""
    test = D.default_pair_splits(split_seed).take(D.default_pairs(), "test")
    harmful = [h for h, _ in test][:n_harmful]
    harmless = D.default_harmless_eval()[:n_harmless]
    return {"harmful": harmful, "harmless": harmless}


def completions(lm: Any, prompts: list[str], ablate_q: torch.Tensor | None = None, max_new_tokens: int = 32) -> list[str]:
    """Greedy completions, optionally with ``ablate_q`` ([d_model] or [d_model, k]) removed at every layer."""
    from refusal.ablation import ablate
    from refusal.generation import generate

    ctx = ablate(lm.model, ablate_q) if ablate_q is not None else nullcontext()
    with ctx:
        return generate(lm, prompts, max_new_tokens=max_new_tokens, progress=False)


def refusal_rate(texts: list[str]) -> Rate:
    return wilson(sum(map(is_refusal, texts)), len(texts))


def on_topic_rate(prompts: list[str], texts: list[str]) -> Rate:
    """Share of answers that share a content word with their prompt."""
    return wilson(sum(content_overlap(p, t) for p, t in zip(prompts, texts)), len(texts))


def unchanged_rate(before: list[str], after: list[str], words: int = 8) -> Rate:
    """Share of answers whose first ``words`` words and refusal status are unchanged."""
    same = [is_refusal(a) == is_refusal(b) and a.split()[:words] == b.split()[:words] for a, b in zip(before, after)]
    return wilson(sum(same), len(same))


def redact(text: str, keep: int = 60) -> str:
    """First ``keep`` characters and ``[redacted]`` (for completions of harmful prompts)."""
    return text if len(text) <= keep and is_refusal(text) else text[:keep] + " [redacted]"
