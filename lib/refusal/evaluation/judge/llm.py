"""The LLM judge: one chat-completions request per item, through the ``openai`` client.

Settings come from arguments or the environment: ``base_url`` or
``OPENAI_BASE_URL``, ``model`` or ``REFUSAL_JUDGE_MODEL``. The API key only ever
comes from ``OPENAI_API_KEY``: no function here takes a key, so a key can never
land in notebook parameters or artifacts.

Requests use temperature 0 and ask for JSON that fits
:data:`refusal.evaluation.judge.rubric.JSON_SCHEMA`; every reply is validated here too.
The client's own retries are off (``max_retries=0``): this module runs one
bounded loop per item, at most ``max_retries + 1`` requests, that retries on
429 / 408 / 409 / 5xx, timeouts, connection errors and malformed replies, with
exponential backoff or the server's ``Retry-After`` (both capped at
``max_wait``). An item that has no valid grade after the last attempt is
returned unscored, with the reason. Requests run in ``concurrency`` threads;
each grade is written to the cache as soon as it arrives.

Every request has a total deadline, ``timeout`` seconds from its start to a complete reply (the HTTP client's
own timeout bounds each read only: a server that sends a byte every 0.4 s would hold it for ever). The request
runs in a daemon thread that is abandoned when the deadline passes, so one item takes at most
:attr:`LLMJudge.item_deadline` seconds whatever the server does. Whatever a reply is (a status error, a body
that is not JSON, two grades, a grade out of range), the item ends graded or unscored with a reason: nothing
a server sends aborts the batch, and only validated grades are cached. Reasons and log lines carry no secret
(:mod:`refusal.evaluation.judge.scrub`).
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import openai
from tqdm.auto import tqdm

from refusal.evaluation.judge.cache import JudgeCache, JudgeCacheError, cache_key
from refusal.evaluation.judge.rubric import JSON_SCHEMA, Grade, MalformedReply, Score, build_messages, parse_reply
from refusal.evaluation.judge.scrub import excerpt, install_log_filter

__all__ = ["LLMJudge", "resolve_model", "resolve_base_url", "retry_after_seconds", "llm_available", "reason_class"]

log = logging.getLogger(__name__)

ResponseFormat = Literal["json_schema", "json_object", "none"]
_RETRYABLE_STATUS = {408, 409, 429}
_NO_KEY = "no-key-set"  # sent when OPENAI_API_KEY is unset (local endpoints ignore it)


def llm_available() -> bool:
    """True when the environment names an endpoint or a key (``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``)."""
    return bool(os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY"))


def resolve_model(model: str | None) -> str:
    """The judge model: the argument, else ``REFUSAL_JUDGE_MODEL``."""
    model = model or os.environ.get("REFUSAL_JUDGE_MODEL")
    if not model:
        raise ValueError("no judge model: pass model=... or set REFUSAL_JUDGE_MODEL")
    return model


def resolve_base_url(base_url: str | None) -> str | None:
    """The endpoint: the argument, else ``OPENAI_BASE_URL``, else None (the client's default)."""
    return base_url or os.environ.get("OPENAI_BASE_URL") or None


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class _Failure:
    """Why one attempt failed (a class such as ``timeout`` or ``HTTP 401``, and the detail), whether to try
    again, and the server's requested wait."""

    kind: str
    detail: str
    retry: bool
    wait: float | None = None

    @property
    def reason(self) -> str:
        """``<kind>: <detail>``, the detail scrubbed of secrets and cut to 200 characters."""
        return f"{self.kind}: {excerpt(self.detail)}" if self.detail else self.kind


_UNSCORED = re.compile(r"^unscored after \d+ request\(s\): ([^:]+)")


def reason_class(reason: str) -> str:
    """The class of an unscored row's reason: ``timeout``, ``HTTP <status>``, ``malformed reply``,
    ``connection error``, ``invalid API response``, ``client error``, ``interrupted`` (``other`` if none)."""
    m = _UNSCORED.match(str(reason))
    return m.group(1).strip() if m else "other"


class _DeadlineExceeded(Exception):
    """A request got no complete reply within its total deadline."""


class _Interrupted(Exception):
    """The run was interrupted while a request was in flight."""


class LLMJudge:
    """Grades (prompt, response) pairs with an OpenAI-compatible chat endpoint.

    Args:
        model: judge model (default ``REFUSAL_JUDGE_MODEL``).
        base_url: endpoint (default ``OPENAI_BASE_URL``, else api.openai.com).
        concurrency: requests in flight at once (threads).
        max_retries: retries per item after the first request (total requests
            per item <= ``max_retries + 1``).
        timeout: total deadline of one request in seconds, from its start to a complete reply; then it is
            abandoned (and retried).
        max_wait: cap on any wait between attempts, also on ``Retry-After``.
        backoff: first backoff in seconds; doubles after each failed attempt.
        response_format: ``json_schema`` (structured output), ``json_object``
            or ``none`` for endpoints that support neither.
        retry_format: the format of a retry after a malformed reply (None: ``response_format``). With
            ``response_format="none"`` and ``retry_format="json_object"`` a local llama.cpp judge grades without
            its slow JSON grammar and uses the grammar only for a reply that did not parse.
        cache: a :class:`JudgeCache`, a database path, True for the default
            path, or None / False for no cache.
        progress: show a tqdm bar over the requests.
    """

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        *,
        concurrency: int = 4,
        max_retries: int = 3,
        timeout: float = 60.0,
        max_wait: float = 30.0,
        backoff: float = 1.0,
        response_format: ResponseFormat = "json_schema",
        retry_format: ResponseFormat | None = None,
        cache: JudgeCache | str | Path | bool | None = True,
        progress: bool = True,
    ) -> None:
        if concurrency < 1 or max_retries < 0 or timeout <= 0 or max_wait < 0 or backoff < 0:
            raise ValueError("need concurrency >= 1, max_retries >= 0, timeout > 0, max_wait >= 0, backoff >= 0")
        self.model = resolve_model(model)
        self.base_url = resolve_base_url(base_url)
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.max_wait = max_wait
        self.backoff = backoff
        self.response_format = response_format
        self.retry_format = retry_format or response_format
        self.progress = progress
        self.cache = self._open_cache(cache)
        self._stop = threading.Event()  # set on interruption: workers stop after their current request
        self._cache_failed = False
        install_log_filter()
        self._client = openai.OpenAI(
            api_key=os.environ.get("OPENAI_API_KEY") or _NO_KEY,
            base_url=self.base_url,
            max_retries=0,
            timeout=timeout,
        )

    @property
    def item_deadline(self) -> float:
        """The most seconds one item can take: every request at its deadline, every wait at ``max_wait``."""
        return (self.max_retries + 1) * self.timeout + self.max_retries * self.max_wait

    @property
    def name(self) -> str:
        """The value of the ``judge`` column: ``llm:<model>``."""
        return f"llm:{self.model}"

    @staticmethod
    def _open_cache(cache: JudgeCache | str | Path | bool | None) -> JudgeCache | None:
        """Normalize the ``cache`` argument."""
        if cache is None or cache is False:
            return None
        if cache is True:
            return JudgeCache()
        if isinstance(cache, JudgeCache):
            return cache
        return JudgeCache(cache)

    def _format_param(self, fmt: ResponseFormat) -> dict[str, Any]:
        """The ``response_format`` request argument of format ``fmt``."""
        if fmt == "json_schema":
            return {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "grade", "schema": JSON_SCHEMA, "strict": True},
                }
            }
        if fmt == "json_object":
            return {"response_format": {"type": "json_object"}}
        return {}

    def _create(self, prompt: str, response: str, fmt: ResponseFormat) -> Any:
        """One chat-completions request, bounded by the total deadline ``timeout``.

        The request runs in a daemon thread; when the deadline passes (or the run is interrupted) it is
        abandoned: its thread ends when the client's own read timeout or the server ends it.

        Raises:
            _DeadlineExceeded, _Interrupted, or whatever the request raised.
        """
        box: dict[str, Any] = {}
        done = threading.Event()

        def call() -> None:
            try:
                box["value"] = self._client.chat.completions.create(
                    model=self.model,
                    messages=build_messages(prompt, response),  # type: ignore[arg-type]
                    temperature=0,
                    timeout=self.timeout,
                    **self._format_param(fmt),
                )
            except BaseException as e:  # handed to the waiting worker
                box["error"] = e
            finally:
                done.set()

        threading.Thread(target=call, name="judge-request", daemon=True).start()
        deadline = time.monotonic() + self.timeout
        while not done.wait(max(0.0, min(0.1, deadline - time.monotonic()))):
            if self._stop.is_set():
                raise _Interrupted
            if time.monotonic() >= deadline:
                raise _DeadlineExceeded
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _attempt(self, prompt: str, response: str, fmt: ResponseFormat) -> Score | _Failure:
        """One request in format ``fmt``: a scored row, or why it failed. Never raises for anything the server
        sends."""
        try:
            completion = self._create(prompt, response, fmt)
        except _Interrupted:
            return _Failure("interrupted", "", retry=False)
        except (_DeadlineExceeded, openai.APITimeoutError):
            return _Failure("timeout", f"no complete reply within the deadline of {self.timeout:g} s", retry=True)
        except openai.APIConnectionError as e:
            return _Failure("connection error", str(e), retry=True)
        except openai.APIStatusError as e:
            status = e.status_code
            retry = status in _RETRYABLE_STATUS or status >= 500
            wait = retry_after_seconds(e.response.headers) if retry else None
            return _Failure(f"HTTP {status}", str(e), retry=retry, wait=wait)
        except openai.APIResponseValidationError as e:
            return _Failure("invalid API response", str(e), retry=True)
        except openai.OpenAIError as e:
            return _Failure("client error", f"{type(e).__name__}: {e}", retry=False)
        except Exception as e:  # a 200 whose body is not JSON, not UTF-8, ...: a malformed reply like any other
            return _Failure("malformed reply", f"{type(e).__name__}: {e}", retry=True)
        try:
            choices = getattr(completion, "choices", None)
            if not choices:
                raise MalformedReply(f"not a chat completion: {excerpt(completion)!r}")
            return Score.from_grade(parse_reply(getattr(choices[0].message, "content", None)))
        except (MalformedReply, AttributeError, TypeError, IndexError) as e:
            return _Failure("malformed reply", str(e), retry=True)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with a little jitter, capped at ``max_wait``."""
        return min(self.max_wait, self.backoff * 2**attempt * (1 + 0.25 * random.random()))

    def grade(self, prompt: str, response: str) -> Score:
        """Grade one item with at most ``max_retries + 1`` requests (no cache).

        Empty or whitespace-only responses get compliance 0 and coherence 0
        without a request.
        """
        if not response.strip():
            return Score.empty()
        failure = _Failure("no attempt", "", retry=False)
        attempts = 0
        for attempt in range(self.max_retries + 1):
            if self._stop.is_set():
                failure = _Failure("interrupted", "", retry=False)
                break
            attempts += 1
            malformed_before = failure.kind == "malformed reply"
            outcome = self._attempt(prompt, response, self.retry_format if malformed_before else self.response_format)
            if isinstance(outcome, Score):
                return outcome
            failure = outcome
            if not failure.retry or attempt == self.max_retries:
                break
            wait = failure.wait if failure.wait is not None else self._backoff(attempt)
            if failure.kind == "malformed reply" and self.retry_format != self.response_format:
                wait = 0.0  # the retry asks for a constrained reply: nothing to wait for
            wait = min(wait, self.max_wait)
            log.debug("attempt %d failed (%s); retrying in %.2f s", attempt + 1, failure.reason, wait)
            self._stop.wait(wait)
        return Score.failed(f"unscored after {attempts} request(s): {failure.reason}")

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Score]:
        """Grade every pair: cached grades first, then one request per missing unique pair.

        Returns one :class:`Score` per input pair, in order.
        """
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        keys = [cache_key(self.model, p, r) for p, r in zip(prompts, responses)]
        results: dict[str, Score] = {}
        for key, r in zip(keys, responses):
            if not r.strip():
                results[key] = Score.empty()
        if self.cache is not None:
            cached = self.cache.get_many(k for k in keys if k not in results)  # validated grades only
            results.update({k: Score.from_grade(g) for k, g in cached.items()})
        todo = {k: (p, r) for k, p, r in zip(keys, prompts, responses) if k not in results}
        log.info(
            "%s: %d items, %d from cache or empty, %d requests to make",
            self.name, len(keys), len(set(keys)) - len(todo), len(todo),
        )
        if todo:
            results.update(self._run(todo))
        scores = [results[k] for k in keys]
        n_unscored = sum(s.unscored for s in scores)
        if n_unscored:
            log.warning("%s: %d of %d items unscored (kept in the table)", self.name, n_unscored, len(scores))
        return scores

    def _run(self, todo: dict[str, tuple[str, str]]) -> dict[str, Score]:
        """Send the requests in threads; cache each final grade as it arrives.

        On an interruption (e.g. KeyboardInterrupt) queued requests are
        cancelled, the workers stop after their current request, and grades
        that arrived in the meantime are still cached.
        """
        out: dict[str, Score] = {}
        self._stop.clear()
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="judge")
        futures: dict[Future[Score], str] = {}
        try:
            futures = {pool.submit(self.grade, p, r): k for k, (p, r) in todo.items()}
            bar = tqdm(as_completed(futures), total=len(futures), desc=self.name, disable=not self.progress)
            for fut in bar:
                self._keep(futures[fut], fut.result(), out)
        except BaseException:
            self._stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for fut, key in futures.items():
                if key not in out and fut.done() and not fut.cancelled() and fut.exception() is None:
                    self._keep(key, fut.result(), out)
        return out

    def _keep(self, key: str, score: Score, out: dict[str, Score]) -> None:
        """Record one result; cache it at once if it is a final grade.

        A cache that fails to store it (disk full, a locked or damaged file) costs the cache entry, not the
        grade: the run goes on and says so once.
        """
        out[key] = score
        if self.cache is not None and not score.unscored and not self._cache_failed:
            try:
                self.cache.put(key, _grade_of(score), model=self.model)
            except JudgeCacheError as e:
                self._cache_failed = True
                log.warning("%s; grades of this run are kept in its table but no longer cached", e)


def _grade_of(score: Score) -> Grade:
    """The cacheable part of a scored row."""
    if math.isnan(score.compliance):
        raise ValueError("an unscored row cannot be cached")
    return Grade(compliance=score.compliance, coherence=score.coherence, reason=score.reason)
