"""On-disk store of judge grades: SQLite in WAL mode, one row per graded item.

The key is a hash of (rubric version, judge model, prompt, response), so a new
rubric or another judge model never reuses old grades. Each grade is committed
as soon as it arrives: an interrupted run loses nothing and the next run asks
only for what is missing. WAL mode plus a busy timeout lets several processes
write at once. Only final grades are stored: unscored items are never cached.

Default location: ``cache_dir()/judge.sqlite`` (``REFUSAL_CACHE`` moves it), or ``REFUSAL_JUDGE_CACHE``: the
workflow gives each job a file of its own on a local disk (SQLite is not safe on a network filesystem shared by
several nodes) and merges the new grades into the shared file with :func:`merge_into`, one writer at a time.
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
from refusal.evaluation.judge.rubric import RUBRIC_VERSION, Grade
from refusal.paths import cache_dir

__all__ = ["JudgeCache", "cache_key", "default_cache_path", "merge_into"]

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
        self._conn = sqlite3.connect(
            str(self.path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        self._execute_retrying("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._execute_retrying(_SCHEMA)

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
        """The stored grades among ``keys`` (missing keys are absent from the result)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Grade] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, compliance, coherence, reason FROM grades WHERE key IN ({marks})", chunk
                ).fetchall()
                for key, compliance, coherence, reason in rows:
                    found[key] = Grade(compliance=compliance, coherence=coherence, reason=reason)
        return found

    def put(self, key: str, grade: Grade, model: str, rubric_version: str = RUBRIC_VERSION) -> None:
        """Store one final grade, committed immediately (one transaction per grade)."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO grades VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, rubric_version, model, grade.compliance, grade.coherence, grade.reason, time.time()),
            )

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
    """Copy into the store ``dst`` the grades of the stores ``sources`` that it lacks (created at or after ``since``,
    when given); a grade already in ``dst`` is kept. Returns the number of grades added."""
    with JudgeCache(dst) as target:
        before = len(target)
        for src in sources:
            con = sqlite3.connect(str(src))
            try:
                rows = con.execute(
                    "SELECT key, rubric_version, model, compliance, coherence, reason, created FROM grades"
                    + (" WHERE created >= ?" if since is not None else ""), () if since is None else (since,)
                ).fetchall()
            finally:
                con.close()
            with target._lock:
                target._conn.execute("BEGIN")
                target._conn.executemany("INSERT OR IGNORE INTO grades VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                target._conn.execute("COMMIT")
        return len(target) - before
