"""Redaction of completions for publication: the one rule every notebook and page uses.

Completions of harmful prompts are research data, not publication material: notebooks and the site show scores
and a short excerpt with the rest withheld; the full text stays in ``runs/`` (ignored by git) for local
inspection. A refusal short enough to show whole carries nothing harmful and is shown whole; anything else shows
at most ``keep`` characters and never more than half of the text, followed by a marker that says how much was
withheld, so a short answer is never published whole.
"""

from __future__ import annotations

from refusal.evaluation.judge.offline import is_refusal

__all__ = ["redact"]


def redact(text: str, keep: int = 60) -> str:
    """An excerpt of ``text`` for publication: ``<start> … [redacted: N chars]`` (a short refusal whole)."""
    text = " ".join(str(text).split())
    if not text or (len(text) <= keep and is_refusal(text)):
        return text
    limit = min(keep, len(text) // 2)
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return f"{cut} … [redacted: {len(text) - len(cut)} chars]"
