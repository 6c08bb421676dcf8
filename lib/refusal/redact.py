"""Redaction of harmful completions for publication.

Harmful completions are research data, not publication material: notebooks and
the site show scores and a short excerpt with the rest withheld. The full text
stays in ``runs/`` (ignored by git) for local inspection.
"""

from __future__ import annotations

__all__ = ["redact"]


def redact(text: str, keep: int = 60) -> str:
    """The first ``keep`` characters of ``text`` (cut at a word boundary), then ``[redacted: N chars]``."""
    text = " ".join(str(text).split())
    if len(text) <= keep:
        return text
    cut = text[:keep].rsplit(" ", 1)[0] or text[:keep]
    return f"{cut} … [redacted: {len(text) - len(cut)} chars]"
