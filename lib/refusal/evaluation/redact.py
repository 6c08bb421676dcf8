"""Redaction of completions for publication: the one rule every notebook and page uses.

Completions of harmful prompts are research data, not publication material: notebooks and the site show scores
and a short excerpt with the rest withheld; the full text stays in ``runs/`` (ignored by git) for local
inspection. A pure refusal short enough to show whole carries nothing harmful and is shown whole: a refusal
phrase plus the words refusals are made of (sorry, request, harm, ...) and nothing else. Anything else, a short
answer or a short refusal that goes on to say something ("I can't help. Mix A with B."), shows at most ``keep``
characters and never more than half of the text, followed by a marker that says how much was withheld, so no
answer is ever published whole, however short.
"""

from __future__ import annotations

from refusal.evaluation.judge.offline import content_stems, find_refusal, normalize

__all__ = ["redact", "is_pure_refusal"]

# Stems (first five letters, as content_stems makes them) of the words a refusal is made of.
_REFUSAL_STEMS = frozenset(
    s[:5] for s in """sorry unfortunately apologize apologise afraid request information guidance content details
    help assist provide support comply decline refuse respectfully able unable allowed permitted appropriate
    inappropriate unethical illegal ethical harm harmful hurt cause people someone dangerous something anything
    else chatbot assistant language model policy policies guidelines programming principles that this""".split()
)


def is_pure_refusal(text: str) -> bool:
    """A refusal phrase and refusal words only: nothing in ``text`` could be an answer."""
    phrase = find_refusal(text)
    if phrase is None:
        return False
    rest = normalize(text).replace(phrase, " ", 1)
    return not (content_stems(rest) - _REFUSAL_STEMS)


def redact(text: str, keep: int = 60) -> str:
    """An excerpt of ``text`` for publication: ``<start> … [redacted: N chars]`` (a short pure refusal whole)."""
    text = " ".join(str(text).split())
    if not text or (len(text) <= keep and is_pure_refusal(text)):
        return text
    limit = min(keep, len(text) // 2)
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return f"{cut} … [redacted: {len(text) - len(cut)} chars]".lstrip()
