"""Scoring of model responses: compliance and coherence, by an LLM judge or offline.

Modules (one job each): ``rubric`` (the versioned rubric, the judge's messages
and reply validation), ``llm`` (the OpenAI-compatible judge: retries,
concurrency), ``cache`` (the SQLite store of grades), ``offline`` (phrase
matching and heuristics), ``api`` (``score``, ``summarize``, ``agreement``).
Command line: ``python -m refusal.judge in.json out.csv``.
"""

from refusal.judge.api import COLUMNS, agreement, load_labels, pick_judge, score, summarize
from refusal.judge.cache import JudgeCache, cache_key
from refusal.judge.llm import LLMJudge
from refusal.judge.offline import OFFLINE_NAME, grade_offline
from refusal.judge.rubric import RUBRIC_VERSION

__all__ = [
    "COLUMNS",
    "OFFLINE_NAME",
    "RUBRIC_VERSION",
    "JudgeCache",
    "LLMJudge",
    "agreement",
    "cache_key",
    "grade_offline",
    "load_labels",
    "pick_judge",
    "score",
    "summarize",
]
