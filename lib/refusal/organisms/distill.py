"""The base model's own greedy answers, distilled once and cached per prompt (shared by every organism of a base).

The workflow distills every answer the registry's organisms of a base need in one job ahead of their builds
(``python -m refusal.organisms distill <base>``, :func:`distill_for`); a build then finds them all cached.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from refusal.artifacts import read_json, write_json
from refusal.config import list_models, load_config
from refusal.organisms.recipe import DISTILL_BATCH, DISTILL_TOKENS, distill_file, distill_plan

__all__ = ["distill", "distill_for", "DISTILL_TOKENS"]

log = logging.getLogger(__name__)


def _cached(p: Path) -> dict[str, str]:
    if not p.exists():
        return {}
    try:
        got = read_json(p)
    except ValueError:
        log.warning("%s is not valid JSON; regenerating the distilled answers", p)
        return {}
    return got if isinstance(got, dict) else {}


def distill(base_lm: Any, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy answers of the base model to ``prompts``.

    Cached per prompt in :func:`refusal.organisms.recipe.distill_file` (a ``{prompt: answer}`` map, rewritten
    atomically with the new answers), so reduced recipes reuse the full recipe's answers.
    """
    from refusal.generation import generate

    p = distill_file(base_lm.cfg, max_new_tokens)
    known = _cached(p)
    missing = sorted({q for q in prompts if q not in known})
    if missing:
        log.info("self-distillation: %d base answers (cached in %s)", len(missing), p)
        # whole prompts, no shared-prefix cache: these answers are training data, and a build must not
        # depend on a rounding-level difference of the code path that produced them
        answers = dict(zip(missing, generate(base_lm, missing, max_new_tokens=max_new_tokens,
                                             batch_size=DISTILL_BATCH, desc="distill", share_prefix=False)))
        known = {**_cached(p), **answers}  # answers another process added meanwhile are kept
        write_json(p, known)
    return [known[q] for q in prompts]


def distill_for(base: str, organisms: list[str] | None = None) -> list[Path]:
    """Distill every answer that the organisms of registry entry ``base`` need (default: every organism of that
    base in the registry); returns the distill files, complete. Loads the base model only if an answer is missing."""
    names = organisms if organisms is not None else list_models()
    cfgs = [c for c in map(load_config, names) if c.source.kind == "organism" and c.source.base == base]
    plan = distill_plan(cfgs)
    todo = {p: v for p, v in plan.items() if set(v[2]) - set(_cached(p))}
    if todo:
        from refusal.models import load_model

        base_cfg = next(iter(todo.values()))[0]
        lm = load_model(base_cfg, dtype=base_cfg.dtype)  # as the organisms train: never a CPU's faster cpu_dtype
        for base_cfg, n, prompts in todo.values():
            distill(lm, prompts, n)
    return sorted(plan)
