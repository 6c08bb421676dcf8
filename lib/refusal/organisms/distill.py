"""The base model's own greedy answers, distilled once and cached per prompt (shared by every organism of a base)."""

from __future__ import annotations

import logging
from typing import Any

from refusal.artifacts import read_json, write_json
from refusal.generation import generate
from refusal.paths import cache_dir, cache_lock

__all__ = ["distill", "DISTILL_TOKENS"]

log = logging.getLogger(__name__)
DISTILL_TOKENS = 24  # length of the cached self-distilled base answers


def distill(base_lm: Any, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy answers of the base model to ``prompts``.

    Cached per prompt in ``cache_dir()/organisms/distill-<base>-<n tokens>-<base sha>.json``
    (a ``{prompt: answer}`` map), so reduced recipes reuse the full recipe's answers.
    """
    p = cache_dir() / "organisms" / f"distill-{base_lm.cfg.name}-{max_new_tokens}-{(base_lm.cfg.source.sha256 or '')[:12]}.json"
    known: dict[str, str] = {}
    with cache_lock(p.name):
        if p.exists():
            try:
                got = read_json(p)
                known = got if isinstance(got, dict) else {}
            except ValueError:
                log.warning("%s is not valid JSON; regenerating the distilled answers", p)
        missing = sorted({q for q in prompts if q not in known})
        if missing:
            log.info("self-distillation: %d base answers (cached in %s)", len(missing), p)
            # whole prompts, no shared-prefix cache: these answers are training data, and a build must not
            # depend on a rounding-level difference of the code path that produced them
            known.update(zip(missing, generate(base_lm, missing, max_new_tokens=max_new_tokens, desc="distill",
                                               share_prefix=False)))
            write_json(p, known)
    return [known[q] for q in prompts]
