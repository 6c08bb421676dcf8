"""Scoring of model responses: compliance and coherence, by an LLM judge or offline.

Modules (one job each): ``rubric`` (the versioned rubric, the judge's messages
and reply validation), ``llm`` (the OpenAI-compatible judge: retries,
concurrency), ``cache`` (the SQLite store of grades), ``offline`` (phrase
matching and heuristics), ``api`` (``score``, ``summarize``, ``agreement``).
Command line: ``python -m refusal.evaluation.judge in.json out.csv``.

The names below are imported lazily, so ``import refusal.evaluation.judge.cache`` does
not pull in the openai client or pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "COLUMNS": "api",
    "agreement": "api",
    "load_labels": "api",
    "pick_judge": "api",
    "refusal_rate": "api",
    "score": "api",
    "summarize": "api",
    "JudgeCache": "cache",
    "cache_key": "cache",
    "LLMJudge": "llm",
    "OFFLINE_NAME": "offline",
    "grade_offline": "offline",
    "is_refusal": "offline",
    "find_refusal": "offline",
    "shares_content_word": "offline",
    "RUBRIC_VERSION": "rubric",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"refusal.evaluation.judge.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'refusal.evaluation.judge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
