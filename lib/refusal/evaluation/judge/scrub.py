"""Secrets out of text: the API key and URL credentials are removed from every reason and every log line.

A judge endpoint is hostile input: a server may echo the key back in an error message (a 401 that quotes it),
and the HTTP client logs the full request URL, which can hold credentials (``https://user:pass@host``,
``?token=...``, ``?key=...``, ``api_key=...``). :func:`scrub` removes those from a text;
:func:`install_log_filter` scrubs every log record of the OpenAI client and its HTTP stack (``openai``,
``httpx``/``httpx2``, ``httpcore``/``httpcore2`` and their children) and of the judge as it is made, so no log
line carries a secret whatever level a notebook or a test sets; it also keeps the HTTP loggers at WARNING unless
someone set their level explicitly (their INFO line prints every request's URL).

Scrub before you cut: cutting a text to a length first can leave a piece of the key that no rule finds.
"""

from __future__ import annotations

import logging
import os
import re
from urllib.parse import quote

__all__ = ["scrub", "excerpt", "ScrubFilter", "install_log_filter", "KEY_ENV", "MASK"]

KEY_ENV = "OPENAI_API_KEY"
MASK = "[redacted]"
_MIN_KEY = 6  # a shorter "key" (a placeholder such as "x") is not a secret worth masking in every word

# scheme://userinfo@ -> scheme://[redacted]@
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@?#'\"<>]+@")
# ?token=..., &key=..., api_key=... (query strings, assignments)
_SECRET_NAME = r"[\w.\-]*(?:token|key|secret|password|passwd|pwd|signature|sig|auth|credential)[\w.\-]*"
_ASSIGNED = re.compile(rf"(?i)((?:^|(?<=[?&;\s\"'(,{{]))" + _SECRET_NAME + r"=)([^&#\s'\",;)}<>]+)")
# "api_key": "...", 'token': '...' (JSON, reprs of dicts), and headers: Authorization: ..., api-key: ...
_QUOTED = re.compile(rf"(?i)([\"']" + _SECRET_NAME + r"[\"']\s*:\s*[\"']?)(?!bearer\b|basic\b)([^\s'\",;)}<>]+)")
_HEADER = re.compile(r"(?i)\b((?:proxy-)?authorization|x-api-key|api-key)(\s*:\s*)(?!bearer\b|basic\b)([^\s'\",;)}<>]+)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s'\",;)}<>]+")
_OPENAI_STYLE = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")

# The loggers that see request URLs and bodies, and the judge's own.
_LOGGER_ROOTS = ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "refusal.evaluation.judge")
_HTTP_ROOTS = ("httpx", "httpx2", "httpcore", "httpcore2")


def _key_forms() -> list[str]:
    """The key from the environment in the forms it can appear in text (as is, URL-quoted)."""
    key = os.environ.get(KEY_ENV, "")
    if len(key) < _MIN_KEY:
        return []
    return sorted({key, quote(key, safe="")}, key=len, reverse=True)


def scrub(text: object, extra: tuple[str, ...] = ()) -> str:
    """``text`` with the API key (``OPENAI_API_KEY``), ``extra`` secrets and URL credentials masked.

    Masks: the key's value wherever it occurs; ``user:pass@`` in URLs; values of query or header fields whose
    name holds token / key / secret / password / signature / auth (``?token=``, ``&key=``, ``api_key=``,
    ``"api-key": "..."``); ``Bearer <token>``; anything shaped like an OpenAI key (``sk-...``).
    """
    s = str(text)
    for secret in [*_key_forms(), *(e for e in extra if len(e) >= _MIN_KEY)]:
        s = s.replace(secret, MASK)
    s = _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", s)
    s = _ASSIGNED.sub(lambda m: f"{m.group(1)}{MASK}", s)
    s = _QUOTED.sub(lambda m: f"{m.group(1)}{MASK}", s)
    s = _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", s)
    s = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", s)
    return _OPENAI_STYLE.sub(MASK, s)


def excerpt(text: object, limit: int = 200) -> str:
    """The first ``limit`` characters of ``text`` after scrubbing it (in that order)."""
    s = scrub(text)
    return s if len(s) <= limit else s[:limit] + "…"


class ScrubFilter(logging.Filter):
    """Rewrites each record's message (and traceback text) through :func:`scrub`; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format: keep it as logging would
            return True
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


_FILTER = ScrubFilter()


def _under(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == r or name.startswith(r + ".") for r in roots)


def install_log_filter() -> None:
    """Scrub every log record of the OpenAI client, its HTTP stack and the judge as it is made (idempotent).

    A logger's filter sees only the records logged on that logger itself, and the HTTP stack creates some of its
    loggers only when it first opens a connection (``httpcore2.http11``), so filters on the loggers that exist
    now would miss them. The scrub is done by the log-record factory instead (chained to the one in place), for
    records whose logger is under ``openai``, ``httpx``, ``httpx2``, ``httpcore``, ``httpcore2`` or
    ``refusal.evaluation.judge``, whatever the handlers and levels. The HTTP loggers are also set to WARNING
    unless their level was set explicitly: their INFO line prints every request's URL.
    """
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "_scrubs", False):
        def scrubbing_factory(*args: object, **kwargs: object) -> logging.LogRecord:
            record = factory(*args, **kwargs)
            if _under(record.name, _LOGGER_ROOTS):
                _FILTER.filter(record)
            return record

        scrubbing_factory._scrubs = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(scrubbing_factory)
    for name in _HTTP_ROOTS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
