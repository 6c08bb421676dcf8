"""The fault matrix: what a broken or hostile server, a bad file or a killed process does to the library.

Each row is one fault and the outcome a careful user expects: a clear error that names the file (and the place),
or a recorded outcome (an item graded or unscored with its reason, a file that is whole or absent). The rows run
against the real parts: the real ``openai`` client talks to ``fake_openai_server.FakeOpenAI`` on 127.0.0.1, files
are written to a temporary folder, killed writes are real processes killed with SIGKILL.

Rows are grouped by what they break: the judge (malformed replies, slow replies, bad grades, secrets), the
artifacts, the data loaders, the registry, the judge's command line and the redaction of published excerpts.
``test_cli_against_a_hostile_server`` runs the judge's command line end to end against a server that mixes them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pandas as pd
import pytest
import yaml
from fake_openai_server import FakeOpenAI

from refusal import data as D
from refusal.artifacts import write_json
from refusal.config import ConfigError, load_config
from refusal.evaluation.judge import JudgeCache, cache_key, score
from refusal.evaluation.judge.__main__ import main as cli_main
from refusal.evaluation.redact import redact
from refusal.paths import PARAMS_DIR, run_dir
from refusal.report.stage import require_stage, write_manifest

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "lib"
SECRET = "sk-test-SECRET-0123456789abcdef"
HTTP_LOGGERS = ("openai", "httpx", "httpx2", "httpcore", "httpcore2")


@dataclass(frozen=True)
class Row:
    """One fault: which part, the input, the expected outcome, and the check."""

    id: str
    part: str
    fault: str
    expect: str
    check: Callable[[SimpleNamespace], None]


ROWS: list[Row] = []


def row(part: str, fault: str, expect: str) -> Callable:
    """Register the decorated check as a row of the matrix."""
    def add(fn: Callable[[SimpleNamespace], None]) -> Callable:
        ROWS.append(Row(fn.__name__, part, fault, expect, fn))
        return fn
    return add


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    """A clean environment (no endpoint, key or model; cache and runs in tmp_path) and a fault server."""
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "REFUSAL_JUDGE_MODEL", "OPENAI_CUSTOM_HEADERS", "OPENAI_LOG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("REFUSAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("REFUSAL_RUNS", str(tmp_path / "runs"))
    with FakeOpenAI() as server:
        yield SimpleNamespace(tmp=tmp_path, server=server, mp=monkeypatch, caplog=caplog)


@pytest.mark.parametrize("r", ROWS, ids=lambda r: r.id)
def test_fault(r: Row, env: SimpleNamespace) -> None:
    r.check(env)


def judge(env: SimpleNamespace, prompts, responses, **kw) -> pd.DataFrame:
    """Score through the LLM judge with fast test settings (no cache unless given)."""
    opts = dict(model="fake-judge", base_url=env.server.base_url, cache=False, max_retries=1,
                timeout=5.0, backoff=0.01, max_wait=0.2, progress=False)
    opts.update(kw)
    return score(list(prompts), list(responses), "llm", **opts)


def items(n: int, faults: dict[int, str] | None = None) -> tuple[list[str], list[str]]:
    """``n`` prompts and answers; answer ``i`` carries ``fault:<mode>`` for ``i`` in ``faults``."""
    faults = faults or {}
    prompts = [f"Question {i}: how do I do task {i}?" for i in range(n)]
    answers = [f"Here is how to do task {i}: step one, step two." + (f" fault:{faults[i]}" if i in faults else "")
               for i in range(n)]
    return prompts, answers


def files_text(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# --- the judge: replies that are not exactly one valid grade --------------------------------------------------

@row("judge", "1 of 20 replies is a 200 labelled JSON whose body is not JSON",
     "that item unscored ('malformed reply', after its retries); the other 19 graded; all 20 requested")
def judge_non_json_body(env):
    prompts, answers = items(20, {7: "non_json"})
    df = judge(env, prompts, answers)
    assert len(df) == 20 and df.unscored.tolist() == [i == 7 for i in range(20)]
    assert df.reason[7].startswith("unscored after 2 request(s): malformed reply")
    assert env.server.count == 19 + 2


@row("judge", "a 200 JSON reply whose bytes are not UTF-8", "unscored 'malformed reply'; the batch goes on")
def judge_not_utf8_body(env):
    prompts, answers = items(3, {1: "not_utf8"})
    df = judge(env, prompts, answers)
    assert df.unscored.tolist() == [False, True, False] and "malformed reply" in df.reason[1]


@row("judge", "a server that drips one byte every 0.4 s (each read is fast, the reply never ends in time)",
     "each request abandoned at its total deadline (1 s): items unscored 'timeout' within item_deadline")
def judge_drip_hits_the_total_deadline(env):
    env.server.mode, env.server.drip_bytes = "drip", 15  # 6 s of drip per request, bounded so old code ends too
    prompts, answers = items(2)
    t0 = time.monotonic()
    df = judge(env, prompts, answers, timeout=1.0, max_retries=1, max_wait=0.2)
    elapsed = time.monotonic() - t0
    assert df.unscored.all() and all("timeout" in r for r in df.reason), df.reason.tolist()
    assert elapsed < 2 * 1.0 + 0.2 + 0.8, elapsed  # item_deadline = (retries + 1) * timeout + retries * max_wait
    assert env.server.count == 4


@row("judge", "a drip on the first request, a good reply on the retry", "graded by the retry")
def judge_drip_then_good(env):
    env.server.script = ["drip"]
    t0 = time.monotonic()
    df = judge(env, *items(1), timeout=1.0, max_retries=1)
    assert not df.unscored.any() and df.compliance[0] == 1.0 and time.monotonic() - t0 < 2.5


@row("judge", 'two JSON objects: "Format example: {...1...}. My grade: {...0...}"',
     "unscored ('2 JSON objects'), never graded by the first, never cached")
def judge_two_objects(env):
    db = env.tmp / "judge.sqlite"
    df = judge(env, *items(2, {0: "two_objects", 1: "two_objects"}), cache=db)
    assert df.unscored.all() and all("2 JSON objects" in r for r in df.reason), df.reason.tolist()
    assert len(JudgeCache(db)) == 0


@row("judge", "a grade that names 'compliance' twice", "unscored ('duplicate key'), not 'last one wins'")
def judge_duplicate_keys(env):
    df = judge(env, *items(1, {0: "duplicate_keys"}))
    assert df.unscored.all() and "duplicate key 'compliance'" in df.reason[0]


@row("judge", "a grade with a field the schema does not have", "unscored ('unexpected field')")
def judge_extra_keys(env):
    df = judge(env, *items(1, {0: "extra_keys"}))
    assert df.unscored.all() and "unexpected field 'confidence'" in df.reason[0]


@row("judge", "a valid grade whose reason has 2,000,000 characters",
     "graded; reason cut to 2,000 characters and marked, in the table and in the cache")
def judge_huge_reason(env):
    from refusal.evaluation.judge.rubric import MAX_REASON  # noqa: PLC0415 (the bound the fix introduces)

    db = env.tmp / "judge.sqlite"
    df = judge(env, *items(1, {0: "huge_reason"}), cache=db)
    assert not df.unscored.any() and df.compliance[0] == 1.0
    assert len(df.reason[0]) < MAX_REASON + 60 and "[reason cut: 1998000 more chars]" in df.reason[0]
    [(stored,)] = sqlite3.connect(db).execute("SELECT length(reason) FROM grades").fetchall()
    assert stored < MAX_REASON + 60


@row("judge", "the cache holds compliance 7 / coherence -1 and a reason that is a blob",
     "both treated as missing and graded again; the new grades replace them")
def judge_cache_values_are_validated(env):
    db = env.tmp / "judge.sqlite"
    prompts, answers = items(2)
    judge(env, prompts, answers, cache=db)
    con = sqlite3.connect(db)
    keys = [cache_key("fake-judge", p, a) for p, a in zip(prompts, answers)]
    con.execute("UPDATE grades SET compliance = 7, coherence = -1 WHERE key = ?", (keys[0],))
    con.execute("UPDATE grades SET reason = x'00ff' WHERE key = ?", (keys[1],))
    con.commit()
    con.close()
    env.server.reset()
    df = judge(env, prompts, answers, cache=db)
    assert env.server.count == 2 and df.compliance.tolist() == [1.0, 1.0] and not df.unscored.any()
    assert sqlite3.connect(db).execute("SELECT MAX(compliance), MIN(coherence) FROM grades").fetchone() == (1.0, 1.0)


@row("judge", "a cache that fails to store a grade (read-only database file)",
     "the grade is kept in the table, the run goes on, a warning names the file")
def judge_cache_write_failure_does_not_abort(env):
    db = env.tmp / "judge.sqlite"
    JudgeCache(db).close()
    cache = JudgeCache(db)
    cache._conn.execute("PRAGMA query_only = ON")  # every write is refused from now on, as on a read-only disk
    df = judge(env, *items(3), cache=cache)
    assert not df.unscored.any() and df.compliance.tolist() == [1.0] * 3
    assert [r for r in env.caplog.records if r.levelno == logging.WARNING and str(db) in r.getMessage()]


# --- the judge: secrets -----------------------------------------------------------------------------------------

@row("judge", "a 401 whose message (and a header) quotes the API key",
     "unscored 'HTTP 401' with the key masked: it is in no reason and not in the CSV")
def judge_401_echo_is_scrubbed(env):
    env.mp.setenv("OPENAI_API_KEY", SECRET)
    df = judge(env, *items(2, {1: "echo_key_401"}))
    assert df.unscored.tolist() == [False, True] and "HTTP 401" in df.reason[1]
    assert env.server.requests[0]["headers"]["authorization"] == f"Bearer {SECRET}"  # the key was sent...
    assert SECRET not in df.to_csv() and "[redacted]" in df.reason[1]  # ...and written nowhere


@row("judge", "a valid grade whose reason quotes the API key",
     "graded; the reason has the key masked, in the table and in the cache file")
def judge_200_echo_is_scrubbed(env):
    env.mp.setenv("OPENAI_API_KEY", SECRET)
    db = env.tmp / "cache" / "judge.sqlite"
    df = judge(env, *items(1, {0: "echo_key_200"}), cache=db)
    assert not df.unscored.any() and SECRET not in df.reason[0]
    for path, data in files_text(db.parent).items():
        assert SECRET.encode() not in data, path


@row("judge", "an endpoint URL with user:password@, the HTTP client's loggers at DEBUG",
     "no log line carries the password (the URL shows [redacted]@)")
def judge_url_credentials_not_logged(env):
    for name in (None, *HTTP_LOGGERS):
        env.caplog.set_level(logging.DEBUG, logger=name)
    url = env.server.base_url.replace("http://", "http://alice:urlpass-0123456789@")
    df = judge(env, *items(2), base_url=url)
    assert not df.unscored.any()
    lines = [r.getMessage() for r in env.caplog.records]
    assert any("HTTP Request" in line for line in lines), "the HTTP client logged no request: nothing was checked"
    assert not [line for line in lines if "urlpass" in line]


@row("judge", "a log line of the HTTP client with ?token=, api_key= and the key (after a judge was made)",
     "each value masked in the record")
def judge_query_credentials_not_logged(env):
    from refusal.evaluation.judge import LLMJudge

    env.mp.setenv("OPENAI_API_KEY", SECRET)
    env.caplog.set_level(logging.DEBUG)
    LLMJudge("fake-judge", env.server.base_url, cache=False)
    logging.getLogger("httpx2").warning("HTTP Request: GET %s", "https://h/v1/x?token=tok-0123456&api_key=k-0123456")
    logging.getLogger("openai._base_client").warning("echo %s", SECRET)
    text = env.caplog.text
    assert "tok-0123456" not in text and "k-0123456" not in text and SECRET not in text
    assert "token=[redacted]" in text


@row("judge", "a stage notebook's logging (stage_setup's basicConfig at INFO), the HTTP client logs a request",
     "the HTTP loggers stay at WARNING (no request URL printed) and what they do print is scrubbed")
def stage_setup_keeps_http_loggers_quiet(env):
    code = ("import logging\nfrom refusal.report.stage import stage_setup\n"
            "stage_setup('01_data', {'model': 'smollm2_135m'})\n"
            "logging.getLogger('httpx2').info('HTTP Request: POST http://u:pw-0123456789@h/v1 200')\n"
            "logging.getLogger('httpx2').warning('retry http://u:pw-0123456789@h/v1')\n")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(LIB)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pw-0123456789" not in out.stderr and "HTTP Request" not in out.stderr
    assert "retry http://[redacted]@h/v1" in out.stderr


# --- artifacts --------------------------------------------------------------------------------------------------

def finished_stage(env) -> tuple[str, Path]:
    """A finished 01_data stage of smollm2_135m in the temporary runs folder."""
    cfg = load_config("smollm2_135m")
    out = run_dir(cfg.name) / "01_data"
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "pairs.json", [["harmful one", "safe one"], ["harmful two", "safe two"]])
    write_json(out / "splits.json", {"train": [0], "val": [1], "test": [], "seed": 0})
    write_manifest(out, cfg, {"seed": 0})
    assert require_stage(cfg.name, "01_data") == out
    return cfg.name, out


def stale_error(model: str, path: Path, what: str) -> None:
    with pytest.raises(Exception) as e:
        require_stage(model, "01_data")
    msg = str(e.value)
    assert type(e.value).__name__ == "StaleArtifactError"
    assert str(path) in msg and what in msg and "re-run stage 01_data" in msg, msg


@row("artifacts", "an artifact truncated after its stage finished",
     "require_stage: StaleArtifactError naming the file, 'truncated' and the stage to re-run")
def artifact_truncated(env):
    model, out = finished_stage(env)
    p = out / "pairs.json"
    p.write_bytes(p.read_bytes()[:10])
    stale_error(model, p, "truncated")


@row("artifacts", "an artifact edited after its stage finished (same size, one byte changed)",
     "require_stage: StaleArtifactError naming the file, 'changed' and the stage to re-run")
def artifact_changed(env):
    model, out = finished_stage(env)
    p = out / "splits.json"
    p.write_text(p.read_text().replace('"seed": 0', '"seed": 1'))
    stale_error(model, p, "changed")


@row("artifacts", "an artifact swapped for another stage's file", "require_stage: StaleArtifactError")
def artifact_swapped(env):
    model, out = finished_stage(env)
    (out / "splits.json").write_bytes((out / "pairs.json").read_bytes())
    stale_error(model, out / "splits.json", "splits.json")


@row("artifacts", "an artifact deleted after its stage finished",
     "require_stage: StaleArtifactError naming the file, 'missing' and the stage to re-run")
def artifact_missing(env):
    model, out = finished_stage(env)
    (out / "pairs.json").unlink()
    stale_error(model, out / "pairs.json", "missing")


_SLOW_WRITER = """
import sys, time
from refusal.artifacts import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half of it")
    print("writing", flush=True)
    time.sleep(120)
"""


@row("artifacts", "a write killed (SIGKILL) mid-way, then the same artifact written again",
     "the kill leaves at worst a hidden temporary file; the next write removes it; the target is whole")
def artifact_killed_write(env):
    target = env.tmp / "out" / "summary.json"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(LIB)})
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    left = [p.name for p in target.parent.iterdir()]
    assert len(left) == 1 and left[0].startswith(".") and left[0].endswith(".tmp") and not target.exists(), left
    write_json(target, {"ok": True})
    assert [p.name for p in target.parent.iterdir()] == ["summary.json"]
    assert json.loads(target.read_text()) == {"ok": True}


@row("artifacts", "a write (watch os.fsync and os.replace)", "the data are fsynced before the rename")
def artifact_fsync_before_rename(env):
    calls: list[tuple[str, str, int]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd).st_size))
        return real_fsync(fd)

    def replace(src, dst, *a, **kw):
        calls.append(("replace", str(src), 0))
        return real_replace(src, dst, *a, **kw)

    env.mp.setattr(os, "fsync", fsync)
    env.mp.setattr(os, "replace", replace)
    write_json(env.tmp / "a.json", {"x": list(range(100))})
    [renamed] = [c[1] for c in calls if c[0] == "replace"]
    synced = [c for c in calls[: calls.index(("replace", renamed, 0))] if c[0] == "fsync" and c[1] == renamed]
    assert synced and synced[0][2] > 0, calls  # the temp file, with its data, reached the disk before the rename


@row("artifacts", "a write under umask 022 (and 027)", "mode 0644 (0640): the process's normal mode, not 0600")
def artifact_mode(env):
    for umask, mode in ((0o022, 0o644), (0o027, 0o640)):
        old = os.umask(umask)
        try:
            p = write_json(env.tmp / f"m{umask:o}.json", {"a": 1})
        finally:
            os.umask(old)
        assert p.stat().st_mode & 0o777 == mode, oct(p.stat().st_mode)


# --- data loaders ------------------------------------------------------------------------------------------------

def data_error(fn, path: Path, *words: str) -> None:
    with pytest.raises(D.DataError) as e:
        fn(path)
    assert str(path) in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


@row("data", "an empty JSON list of pairs / of prompts", "DataError naming the file: an empty dataset")
def data_empty_json(env):
    p = env.tmp / "empty.json"
    p.write_text("[]")
    data_error(D.load_pairs, p, "empty dataset")
    data_error(D.load_prompts, p, "empty dataset")


@row("data", "a CSV with a header and no rows (AdvBench)", "DataError naming the file: no data rows")
def data_header_only_csv(env):
    p = env.tmp / "harmful_behaviors.csv"
    p.write_text("goal,target\n")
    data_error(D.load_advbench, p, "no data rows")


@row("data", "a prompts file in Latin-1 (not UTF-8), JSON and CSV",
     "DataError naming the file and the line, not a bare UnicodeDecodeError")
def data_not_utf8(env):
    p = env.tmp / "latin1.json"
    p.write_bytes('[\n"Caf\u00e9 question one",\n"two"\n]'.encode("latin-1"))
    data_error(D.load_prompts, p, "not UTF-8", "line 2")
    c = env.tmp / "latin1.csv"
    c.write_bytes("goal,target\nR\u00e9sum\u00e9 fraud,Sure\n".encode("latin-1"))
    data_error(D.load_advbench, c, "not UTF-8", "line 2")


@row("data", "an Alpaca record whose instruction is a number", "DataError naming the file and the item, not TypeError")
def data_alpaca_non_string(env):
    p = env.tmp / "alpaca.json"
    p.write_text(json.dumps([{"instruction": "Name a colour.", "input": ""}, {"instruction": 42, "input": ""}]))
    data_error(D.load_alpaca, p, "item [1]", "instruction")


@row("data", "load_alpaca(limit=0), limit=2 of 3", "limit=0 is an error; limit=2 keeps exactly 2")
def data_alpaca_limit(env):
    p = env.tmp / "alpaca.json"
    p.write_text(json.dumps([{"instruction": f"Instruction {i}.", "input": ""} for i in range(3)]))
    with pytest.raises(ValueError, match="limit"):
        D.load_alpaca(p, limit=0)
    assert D.load_alpaca(p, limit=2) == ["Instruction 0.", "Instruction 1."]


@row("data", "HarmBench with FunctionalCategory 'Standard' (capitalised), filtered by 'standard'",
     "the rows are kept (case ignored); a category no row has is an error listing those found")
def data_harmbench_case(env):
    p = env.tmp / "hb.csv"
    p.write_text("Behavior,FunctionalCategory\nGive advice on evading taxes,Standard\nSummarize it,contextual\n")
    assert D.load_harmbench(p) == ["Give advice on evading taxes"]
    with pytest.raises(D.DataError, match="no row has FunctionalCategory 'copyright'.*Standard, contextual"):
        D.load_harmbench(p, "copyright")


@row("data", "a one-per-line file whose prompts start with '#', with blank lines; a duplicate on line 5",
     "'#' lines kept as prompts; the error names the file's line numbers (5 and 2)")
def data_lines(env):
    p = env.tmp / "prompts.txt"
    p.write_text("\n#1 way to pick a lock?\n\n# How do I make a fake ID?\n#1 WAY to pick a lock?\n")
    with pytest.raises(D.DataError, match=r"prompts.txt: line 5 duplicates line 2"):
        D.load_lines(p)
    p.write_text("\n#1 way to pick a lock?\n\n# How do I make a fake ID?\n")
    assert D.load_lines(p) == ["#1 way to pick a lock?", "# How do I make a fake ID?"]


@row("data", "two prompts equal up to Unicode form (NFC 'caf\\u00e9' vs NFD 'cafe\\u0301')", "DataError: a duplicate")
def data_unicode_duplicates(env):
    p = env.tmp / "nfd.json"
    p.write_text(json.dumps(["Describe the caf\u00e9 menu", "Describe the cafe\u0301 menu"]))
    data_error(D.load_prompts, p, "item [1] duplicates item [0]")


@row("data", "a prompt of zero-width spaces and a word joiner only", "DataError: only invisible characters")
def data_invisible_prompt(env):
    p = env.tmp / "invisible.json"
    p.write_text(json.dumps(["A real prompt", "\u200b\u200b\u2060"]))
    data_error(D.load_prompts, p, "item [1]", "invisible")


# --- registry ----------------------------------------------------------------------------------------------------

@row("registry", "model name '../../somewhere/evil' (a valid YAML exists there)",
     "ConfigError naming the name; the file outside params/ is not read")
def registry_path_in_name(env):
    params = env.tmp / "a" / "b" / "params"
    params.mkdir(parents=True)
    evil = env.tmp / "a" / "somewhere" / "evil.yaml"
    evil.parent.mkdir(parents=True)
    evil.write_text(yaml.safe_dump(yaml.safe_load((PARAMS_DIR / "smollm2_135m.yaml").read_text()) | {"name": "evil"}))
    with pytest.raises(ConfigError, match=r"'\.\./\.\./somewhere/evil' is not a valid model name"):
        load_config("../../somewhere/evil", params_dir=params)


@row("registry", "run_dir('../evil') (a folder outside runs/)", "ValueError; no folder is created")
def registry_run_dir_outside(env):
    with pytest.raises(ValueError, match="not a plain folder name"):
        run_dir("../evil")
    assert not (env.tmp / "evil").exists()


@row("registry", "a params file naming 'n_layers' twice", "ConfigError naming the file, the key and both lines")
def registry_duplicate_key(env):
    p = env.tmp / "dup.yaml"
    text = (PARAMS_DIR / "smollm2_135m.yaml").read_text().replace("name: smollm2_135m", "name: dup")
    p.write_text(text + "n_layers: 7\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value) and "duplicate key 'n_layers'" in str(e.value) and "first on line" in str(e.value)


def _broken_value(env, key: str, value) -> None:
    data = yaml.safe_load((PARAMS_DIR / "smollm2_135m.yaml").read_text()) | {"name": "broken"}
    data[key] = value
    p = env.tmp / "broken.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value) and f"'{key}" in str(e.value), str(e.value)


@row("registry", "outlier_ratio: .nan, then -5, then 1", "ConfigError naming the file and 'outlier_ratio'")
def registry_outlier_ratio(env):
    for value in (math.nan, -5.0, 1.0, math.inf):
        _broken_value(env, "outlier_ratio", value)


@row("registry", "stage_params with .inf; gen_batch_size 0", "ConfigError naming the file and the key")
def registry_other_ranges(env):
    _broken_value(env, "stage_params", {"04_ablate": {"alpha": math.inf}})
    _broken_value(env, "gen_batch_size", 0)


# --- the judge's command line -------------------------------------------------------------------------------------

def cli(env, items_: list[dict], *extra: str) -> tuple[int, dict]:
    src, out, summary = env.tmp / "in.json", env.tmp / "out.csv", env.tmp / "summary.json"
    src.write_text(json.dumps(items_))
    rc = cli_main([str(src), str(out), "--no-progress", "--summary", str(summary), *extra])
    return rc, json.loads(summary.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the summary"))


@row("cli", "--summary when every item is unscored (the server answers 500)",
     "exit 0; valid JSON (rates null, not NaN); unscored counted by reason: {'HTTP 500': 3}")
def cli_summary_all_unscored(env):
    env.server.mode = "500"
    env.mp.setenv("OPENAI_API_KEY", "sk-test")
    rc, s = cli(env, [{"prompt": f"p{i}", "response": f"answer {i}"} for i in range(3)], "--judge", "llm",
                "--model", "fake-judge", "--base-url", env.server.base_url, "--no-cache", "--max-retries", "0")
    [j] = s["judges"]
    assert rc == 0 and j["n_unscored"] == 3 and j["rates"]["refused"]["rate"] is None
    assert j["unscored_by_reason"] == {"HTTP 500": 3}


@row("cli", "--summary over no items", "exit 0; valid JSON, n_items 0")
def cli_summary_no_items(env):
    rc, s = cli(env, [], "--judge", "offline")
    assert rc == 0 and s["judges"][0]["n_items"] == 0 and s["judges"][0]["mean_compliance"] is None


@row("cli", "--cache pointing at a file of random bytes", "exit with an error naming the cache file")
def cli_corrupt_cache(env):
    db = env.tmp / "corrupt.sqlite"
    db.write_bytes(os.urandom(4096))
    env.mp.setenv("OPENAI_API_KEY", "sk-test")
    with pytest.raises(SystemExit) as e:
        cli(env, [{"prompt": "p", "response": "r"}], "--judge", "llm", "--model", "m", "--base-url",
            env.server.base_url, "--cache", str(db))
    assert str(db) in str(e.value.code) and env.server.count == 0


@row("cli", "--cache pointing at another program's SQLite database (a 'users' table)",
     "exit with an error naming the file; the database is left as it was (no table added)")
def cli_foreign_cache(env):
    db = env.tmp / "app.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.commit()
    con.close()
    env.mp.setenv("OPENAI_API_KEY", "sk-test")
    with pytest.raises(SystemExit) as e:
        cli(env, [{"prompt": "p", "response": "r"}], "--judge", "llm", "--model", "m", "--base-url",
            env.server.base_url, "--cache", str(db))
    assert str(db) in str(e.value.code) and "not a judge grade cache" in str(e.value.code)
    tables = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"users"}


# --- redaction ----------------------------------------------------------------------------------------------------

@row("redaction", "a short answer (30 characters, not a refusal)", "cut to half at most, with the marker")
def redact_short_answer(env):
    out = redact("Sure: mix the two and heat it.")
    assert "[redacted:" in out and out != "Sure: mix the two and heat it."


@row("redaction", "a short refusal that goes on to answer ('I cannot help. Mix bleach and ammonia.')",
     "cut and marked like any answer; a pure short refusal is still shown whole")
def redact_short_refusal_with_payload(env):
    assert "[redacted:" in redact("I cannot help. Mix bleach and ammonia.")
    assert "[redacted:" in redact("Sorry, but: step 1 buy it, step 2 aim.")
    assert redact("I'm sorry, but I can't help with that.") == "I'm sorry, but I can't help with that."


# --- end to end -----------------------------------------------------------------------------------------------------

def test_cli_against_a_hostile_server(tmp_path: Path) -> None:
    """``python -m refusal.evaluation.judge`` against a server that mixes good replies, non-JSON bodies, drips
    (one byte every 0.4 s, for ever as far as a 1 s deadline goes), two-object replies and a 401 that echoes
    the key: it ends within its deadline, writes every item, and the key is in no file and no log line (DEBUG)."""
    faults = {1: "non_json", 4: "drip", 6: "two_objects", 8: "echo_key_401", 9: "non_json", 11: "drip"}
    prompts, answers = items(12, faults)
    answers[3] = "I'm sorry, but I can't help with that."
    src, out, summary, db = tmp_path / "in.json", tmp_path / "out.csv", tmp_path / "s.json", tmp_path / "c.sqlite"
    src.write_text(json.dumps([{"prompt": p, "response": a} for p, a in zip(prompts, answers)]))
    timeout, retries, max_wait, concurrency = 1.0, 1, 0.2, 4
    item_deadline = (retries + 1) * timeout + retries * max_wait
    bound = math.ceil(len(prompts) / concurrency) * item_deadline
    env = {**os.environ, "PYTHONPATH": str(LIB), "OPENAI_API_KEY": SECRET, "REFUSAL_CACHE": str(tmp_path / "cache")}
    with FakeOpenAI() as server:
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "refusal.evaluation.judge", str(src), str(out), "--judge", "llm", "--model",
             "fake-judge", "--base-url", server.base_url, "--cache", str(db), "--concurrency", str(concurrency),
             "--max-retries", str(retries), "--timeout", str(timeout), "--max-wait", str(max_wait), "--backoff",
             "0.01", "--summary", str(summary), "--no-progress", "--log-level", "DEBUG"],
            env=env, capture_output=True, text=True, timeout=bound + 30)
        elapsed = time.monotonic() - t0
        assert server.requests[0]["headers"]["authorization"] == f"Bearer {SECRET}"  # the key was used
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert elapsed < bound + 15, (elapsed, bound)  # the requests' deadlines, plus the interpreter's start-up
    df = pd.read_csv(out)
    assert len(df) == 12 and df.prompt.tolist() == prompts
    kinds = {i: df.reason[i].split(": ")[1] if df.unscored[i] else "graded" for i in range(12)}
    assert kinds == {i: {"non_json": "malformed reply", "drip": "timeout", "two_objects": "malformed reply",
                         "echo_key_401": "HTTP 401"}.get(faults.get(i, ""), "graded") for i in range(12)}, kinds
    assert df.compliance[3] == 0.0 and df.refused[3]
    s = json.loads(summary.read_text())["judges"][0]
    assert s["unscored_by_reason"] == {"HTTP 401": 1, "malformed reply": 3, "timeout": 2}
    assert "DEBUG" in proc.stderr and "HTTP Request" in proc.stderr  # the HTTP client's log was on...
    for name, text in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        assert SECRET not in text, name  # ...and no line of it carries the key
    for path, data in files_text(tmp_path).items():
        assert SECRET.encode() not in data, path


def test_the_matrix_covers_every_part() -> None:
    """Every part of the library the faults are about has rows, and every row says what it expects."""
    parts = {r.part for r in ROWS}
    assert parts == {"judge", "artifacts", "data", "registry", "cli", "redaction"}
    assert len({r.id for r in ROWS}) == len(ROWS) and all(r.fault and r.expect for r in ROWS)
