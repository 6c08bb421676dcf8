"""Wall time and peak memory of one build, measured from outside its process.

Each method's build runs in a process of its own (``python -m refusal.peers build <method>``), so that its peak
resident memory is its own: the parent waits for it with ``os.wait4``, whose resource record is that child's
(Linux: ``ru_maxrss`` in KiB, the largest resident set of the child and of the processes it waited for).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Measured", "run_measured", "thread_env"]


@dataclass(frozen=True)
class Measured:
    """How a build process ended: its exit code, wall seconds, CPU seconds (user + system: what it computed, less
    sensitive than wall time to other work on the machine) and peak resident memory in bytes."""

    returncode: int
    seconds: float
    cpu_seconds: float
    peak_rss_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def thread_env(threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process limited to ``threads`` compute threads (OpenMP, MKL, torch)."""
    env = dict(os.environ if base is None else base)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def run_measured(cmd: list[str], log: Path, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None) -> Measured:
    """Run ``cmd``, its standard output into ``log`` (standard error passes through: progress bars), and measure it.

    Returns:
        :class:`Measured` (the caller decides what a non-zero exit code means).
    """
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, stdout=out, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    return Measured(returncode=proc.returncode, seconds=seconds, cpu_seconds=usage.ru_utime + usage.ru_stime,
                    peak_rss_bytes=int(usage.ru_maxrss) * 1024)
