"""On-disk store of judge grades: SQLite in WAL mode, one row per graded item.

The key is a hash of (rubric version, judge model, prompt, response), so a new
rubric or another judge model never reuses old grades. Each grade is committed
as soon as it arrives: an interrupted run loses nothing and the next run asks
only for what is missing. WAL mode plus a busy timeout lets several processes
write at once. Only final grades are stored: unscored items are never cached.

Default location: ``cache_dir()/judge.sqlite`` (``REFUSAL_CACHE`` moves it), or ``REFUSAL_JUDGE_CACHE``: the
workflow gives each job a file of its own on a local disk (SQLite is not safe on a network filesystem shared by
several nodes) and merges the new grades into the shared file with :func:`merge_into`, one writer at a time.

Nothing read from the cache is trusted: a stored grade outside 0 / 0.5 / 1 is treated as missing (the item is
graded again, and the warning names the file). A file that is not a SQLite database, or a database that is not a
grade cache (other tables, other columns), is a :class:`JudgeCacheError` that names the file; it is never
modified or moved (it may be someone's data): point the run at another file or move it away yourself.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from refusal.artifacts import sha256_json
from refusal.evaluation.judge.rubric import RUBRIC_VERSION, Grade, MalformedReply, check_grade
from refusal.paths import cache_dir

__all__ = ["JudgeCache", "JudgeCacheError", "cache_key", "default_cache_path", "merge_into"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS grades (
    key TEXT PRIMARY KEY,
    rubric_version TEXT NOT NULL,
    model TEXT NOT NULL,
    compliance REAL NOT NULL,
    coherence REAL NOT NULL,
    reason TEXT NOT NULL,
    created REAL NOT NULL
)
"""


_COLUMNS = ("key", "rubric_version", "model", "compliance", "coherence", "reason", "created")


class JudgeCacheError(RuntimeError):
    """The grade cache cannot be used (not a database, not a grade cache, damaged, unwritable); names the file."""


def default_cache_path() -> Path:
    """``$REFUSAL_JUDGE_CACHE`` when set, else ``cache_dir()/judge.sqlite``."""
    env = os.environ.get("REFUSAL_JUDGE_CACHE")
    return Path(env) if env else cache_dir() / "judge.sqlite"


def cache_key(model: str, prompt: str, response: str, rubric_version: str = RUBRIC_VERSION) -> str:
    """Hash of (rubric version, judge model, prompt, response)."""
    return sha256_json({"rubric": rubric_version, "model": model, "prompt": prompt, "response": response})


class JudgeCache:
    """A SQLite store of final grades, safe for threads and for concurrent processes.

    Args:
        path: the database file (default :func:`default_cache_path`).
        busy_timeout_s: how long a writer waits for another process's lock.
    """

    def __init__(self, path: str | Path | None = None, busy_timeout_s: float = 60.0) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(
                str(self.path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            self._check_schema()
            self._execute_retrying("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._execute_retrying(_SCHEMA)
        except sqlite3.Error as e:
            raise self._error("cannot be opened as a judge grade cache", e) from None

    def _error(self, what: str, e: BaseException | None = None) -> JudgeCacheError:
        detail = f" ({type(e).__name__}: {e})" if e is not None else ""
        return JudgeCacheError(f"{self.path}: {what}{detail}; move it away or pass another cache file "
                               f"(CLI: --cache PATH or --no-cache)")

    def _check_schema(self) -> None:
        """An empty database is made a cache; one with other tables or other columns is refused."""
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return
        if tables != {"grades"}:
            raise self._error(f"is a SQLite database but not a judge grade cache (tables: {', '.join(sorted(tables))})")
        columns = tuple(r[1] for r in self._conn.execute("PRAGMA table_info(grades)"))
        if columns != _COLUMNS:
            raise self._error(f"has a table 'grades' with columns {', '.join(columns)}, not a judge grade cache's")

    def _execute_retrying(self, sql: str, attempts: int = 20) -> None:
        """Run a statement that may meet 'database is locked' while another process sets up."""
        for i in range(attempts):
            try:
                self._conn.execute(sql)
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or i == attempts - 1:
                    raise
                time.sleep(0.05 * (i + 1))

    def get_many(self, keys: Iterable[str]) -> dict[str, Grade]:
        """The stored valid grades among ``keys`` (missing or invalid keys are absent from the result)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Grade] = {}
        rows: list[tuple] = []
        with self._lock:
            try:
                for i in range(0, len(keys), 500):
                    chunk = keys[i : i + 500]
                    marks = ",".join("?" * len(chunk))
                    rows += self._conn.execute(
                        f"SELECT key, compliance, coherence, reason FROM grades WHERE key IN ({marks})", chunk
                    ).fetchall()
            except sqlite3.Error as e:
                raise self._error("could not be read", e) from None
        bad = 0
        for key, compliance, coherence, reason in rows:
            try:
                found[key] = check_grade(compliance, coherence, reason)
            except MalformedReply as e:
                bad += 1
                log.debug("%s: stored grade %s is invalid (%s)", self.path, key[:12], e)
        if bad:
            log.warning("%s: %d stored grade(s) out of range or malformed; those items are graded again", self.path, bad)
        return found

    def put(self, key: str, grade: Grade, model: str, rubric_version: str = RUBRIC_VERSION) -> None:
        """Store one final grade, committed immediately (one transaction per grade).

        Raises:
            MalformedReply: the grade is out of range (nothing invalid is ever stored).
            JudgeCacheError: the database refused the write.
        """
        grade = check_grade(grade.compliance, grade.coherence, grade.reason)
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT OR REPLACE INTO grades VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (key, rubric_version, model, grade.compliance, grade.coherence, grade.reason, time.time()),
                )
            except sqlite3.Error as e:
                raise self._error("could not store a grade", e) from None

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM grades").fetchone()[0])

    def integrity_ok(self) -> bool:
        """``PRAGMA integrity_check`` says ``ok``."""
        with self._lock:
            return self._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> JudgeCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def merge_into(dst: str | Path, sources: Iterable[str | Path], since: float | None = None) -> int:
    """Copy into the store ``dst`` the valid grades of the stores ``sources`` that it lacks (created at or after
    ``since``, when given); a grade already in ``dst`` is kept, an invalid one is not copied. Returns the number of
    grades added.

    Raises:
        JudgeCacheError: ``dst`` or a source is not a grade cache (the message names the file).
    """
    with JudgeCache(dst) as target:
        before = len(target)
        for src in sources:
            with JudgeCache(src) as source, source._lock:
                rows = source._conn.execute(
                    f"SELECT {', '.join(_COLUMNS)} FROM grades" + (" WHERE created >= ?" if since is not None else ""),
                    () if since is None else (since,)).fetchall()
            valid = []
            for row in rows:
                try:
                    check_grade(row[3], row[4], row[5])
                except MalformedReply:
                    continue
                valid.append(row)
            with target._lock:
                target._conn.execute("BEGIN")
                target._conn.executemany("INSERT OR IGNORE INTO grades VALUES (?, ?, ?, ?, ?, ?, ?)", valid)
                target._conn.execute("COMMIT")
        return len(target) - before
