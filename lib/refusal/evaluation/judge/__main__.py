"""Command line: ``python -m refusal.evaluation.judge in.json out.csv [options]``.

``in.json`` is a list of ``{"prompt": ..., "response": ...}``. ``out.csv``
gets the table of :func:`refusal.evaluation.judge.score`; with ``--judge both`` it holds
both judges' rows (told apart by the ``judge`` column) and the summary also
reports their agreement. The API key is read from ``OPENAI_API_KEY`` only.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from refusal.artifacts import read_json, write_csv, write_json
from refusal.evaluation.judge.api import agreement, score, summarize
from refusal.evaluation.judge.cache import JudgeCacheError
from refusal.evaluation.judge.scrub import install_log_filter

log = logging.getLogger("refusal.evaluation.judge")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m refusal.evaluation.judge", description=__doc__.split("\n\n")[0])
    p.add_argument("input", type=Path, help='JSON list of {"prompt": ..., "response": ...}')
    p.add_argument("output", type=Path, help="CSV to write")
    p.add_argument("--judge", choices=["auto", "offline", "llm", "both"], default="auto")
    p.add_argument("--model", help="judge model (default: $REFUSAL_JUDGE_MODEL)")
    p.add_argument("--base-url", help="endpoint (default: $OPENAI_BASE_URL)")
    p.add_argument("--cache", type=Path, help="grade cache (default: cache_dir()/judge.sqlite)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--max-retries", type=int, default=3)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--max-wait", type=float, default=30.0)
    p.add_argument("--backoff", type=float, default=1.0)
    p.add_argument("--response-format", choices=["json_schema", "json_object", "none"], default="json_schema")
    p.add_argument("--retry-format", choices=["json_schema", "json_object", "none"],
                   help="format of a retry after a malformed reply (default: --response-format)")
    p.add_argument("--summary", type=Path, help="also write the summary as JSON here")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default="INFO",
                   help="DEBUG also shows the HTTP client's log (secrets masked)")
    return p


def _read_items(path: Path) -> tuple[list[str], list[str]]:
    """Prompts and responses from the input file, validated."""
    try:
        items = read_json(path)
    except (OSError, ValueError) as e:  # missing, unreadable, not UTF-8, not JSON: the message names the file
        raise SystemExit(f"error: {e if str(path) in str(e) else f'{path}: {e}'}") from None
    if not isinstance(items, list):
        raise SystemExit(f"{path}: expected a JSON list of objects")
    for i, it in enumerate(items):
        if not isinstance(it, dict) or not isinstance(it.get("prompt"), str) or not isinstance(it.get("response"), (str, type(None))):
            raise SystemExit(f"{path}: item {i} must be an object with string 'prompt' and 'response'")
    return [it["prompt"] for it in items], [it["response"] or "" for it in items]


def _jsonable(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary with the confusion table as nested dicts and every undefined number (NaN) as null."""
    out = dict(summary)
    if "agreement" in out:
        agr = dict(out["agreement"])
        agr["confusion"] = {str(k): {str(c): int(v) for c, v in row.items()} for k, row in agr["confusion"].to_dict("index").items()}
        out["agreement"] = agr
    return _no_nan(out)


def _no_nan(obj: Any) -> Any:
    """``obj`` with NaN floats replaced by None, at any depth (JSON has no NaN)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    return obj


def main(argv: list[str] | None = None) -> int:
    """Score the input file, write the CSV (and summary), print the summary."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level), format="%(levelname)s %(name)s: %(message)s")
    if args.log_level == "DEBUG":  # asked for: the HTTP client's lines too (the scrub filter masks their secrets)
        for name in ("openai", "httpx", "httpx2", "httpcore", "httpcore2"):
            logging.getLogger(name).setLevel(logging.DEBUG)
    install_log_filter()
    prompts, responses = _read_items(args.input)
    kw: dict[str, Any] = dict(
        model=args.model, base_url=args.base_url, cache=False if args.no_cache else (args.cache or True),
        concurrency=args.concurrency, max_retries=args.max_retries, timeout=args.timeout,
        max_wait=args.max_wait, backoff=args.backoff, response_format=args.response_format,
        retry_format=args.retry_format, progress=not args.no_progress,
    )
    kinds = ["offline", "llm"] if args.judge == "both" else [args.judge]
    try:
        tables = [score(prompts, responses, kind, **kw) for kind in kinds]
    except JudgeCacheError as e:
        raise SystemExit(f"error: {e}") from None
    write_csv(args.output, pd.concat(tables, ignore_index=True))
    summary: dict[str, Any] = {"judges": [summarize(t) for t in tables]}
    if len(tables) == 2:
        summary["agreement"] = agreement(tables[0], tables[1])
    summary = _jsonable(summary)
    if args.summary:
        write_json(args.summary, summary)
    print(json.dumps(summary, indent=2, default=str))
    n_unscored = sum(s["n_unscored"] for s in summary["judges"])
    if n_unscored:
        reasons = {}
        for s in summary["judges"]:
            for k, v in s["unscored_by_reason"].items():
                reasons[k] = reasons.get(k, 0) + v
        log.warning("%d unscored item(s) (%s): see the 'unscored' and 'reason' columns of %s", n_unscored,
                    ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
