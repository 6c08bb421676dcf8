"""The report runner: parallel model chains (separate processes, threads split), failure isolation, skip when
unchanged. Runs a two-cell stage notebook through real papermill kernels in a scratch repository root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat

STAGE = '''import json, os, time
from pathlib import Path
if model == "broken":
    raise RuntimeError("this stage fails on purpose")
t0 = time.time()
time.sleep(3)
out = Path(os.environ["REFUSAL_RUNS"]) / model
out.mkdir(parents=True, exist_ok=True)
(out / "stage.json").write_text(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "start": t0, "end": time.time(),
                                            "omp": os.environ.get("OMP_NUM_THREADS")}))
'''


def _root(tmp_path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('model = "x"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(STAGE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "params").mkdir()
    (tmp_path / "lib" / "refusal").mkdir(parents=True)
    nbformat.write(nb, tmp_path / "notebooks" / "01_stage.ipynb")
    return tmp_path


def _report(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REFUSAL_ROOT": str(root), "REFUSAL_RUNS": str(root / "runs")}
    code = ("import sys, refusal.report.runner as r; r.list_models = lambda: ['a', 'b', 'broken']; "
            "sys.exit(r.main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)


def test_parallel_chains_isolate_failures_and_skip_when_unchanged(tmp_path):
    root = _root(tmp_path)
    res = _report(root, "--models", "a,b,broken", "--jobs", "2", "--no-site")
    log = res.stderr
    assert res.returncode == 1, log  # one failure
    assert "[broken] 01_stage FAILED: RuntimeError: this stage fails on purpose" in log
    assert "2 model chains in parallel" in log
    runs = {m: json.loads((root / "runs" / m / "stage.json").read_text()) for m in ("a", "b")}
    assert not (root / "runs" / "broken" / "stage.json").exists()
    threads = str(max(1, (os.cpu_count() or 1) // 2))
    assert all(r["omp"] == threads for r in runs.values())  # the kernels got their share of the cores
    a, b = runs["a"], runs["b"]
    assert a["start"] < b["end"] and b["start"] < a["end"], "the two chains did not overlap in time"
    assert (root / "site" / "models" / "a" / "01_stage.ipynb").exists()
    # nothing changed: a second run skips a and b (and retries the broken one)
    again = _report(root, "--models", "a,b", "--jobs", "2", "--no-site")
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("01_stage up to date") == 2
    assert json.loads((root / "runs" / "a" / "stage.json").read_text()) == a


def test_stages_that_do_not_apply():
    """00 runs only for organisms; 05/06 (weight orthogonalization) are skipped, with the reason, for sandwich-norm
    architectures instead of failing the chain; every other stage applies to every model."""
    from refusal.config import ORTHO_STAGES, load_config, skip_reason

    c = load_config
    assert skip_reason(c("qwen25_coder_05b"), "00_organism") == "not an organism"
    assert skip_reason(c("smollm2_refusal"), "00_organism") is None
    for stage in ORTHO_STAGES:
        assert "sandwich norms" in skip_reason(c("gemma3_refusal"), stage)
        assert skip_reason(c("smollm2_refusal"), stage) is None
        assert skip_reason(c("gemma_2b_it"), stage) is None  # Gemma 1: no sandwich norms, exact
    assert all(skip_reason(c("gemma3_refusal"), s) is None for s in ("01_data", "02_extract", "04_ablate"))
