"""One job of the report workflow: a stage notebook executed by papermill, for one model or once over all models.

``python -m refusal.report.job <stage> <model> [--threads N] [--judges]`` runs ``notebooks/<stage>.ipynb`` with
``-p model <model>``; ``python -m refusal.report.job <stage> --models a,b,...`` runs a cross-model stage with
``-p models a,b,...``. ``workflow/Snakefile`` calls it for every stage job; it can be run by hand too.

The executed notebook is written to ``logs/<model>/<stage>.ipynb`` and moved to the page the site renders
(``site/models/<model>/<stage>.ipynb``, ``site/compare/<stage>.ipynb``) only when the stage succeeded and wrote its
manifest: a failed stage leaves its notebook, with the failing cell's traceback, under ``logs/``. The last line
the job prints says what happened (``[model] stage done in 12.3 s`` or ``[model] stage FAILED: ...``).

The kernel gets ``threads`` torch/OpenMP threads, and a judge cache of its own (``REFUSAL_JUDGE_CACHE``) in a
temporary folder on the local disk, a copy of the shared cache for a stage that judges; the grades it adds are
left in ``cache_dir()/judge-parts/`` for :func:`merge_judge_parts`, which the workflow runs once at the end (SQLite
is not safe on a network filesystem written from several nodes at once).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from refusal.paths import NOTEBOOKS_DIR, REPO_ROOT, cache_dir
from refusal.report.outputs import LOGS_DIR, log_paths, manifest_path, page_path, rel

__all__ = ["run_job", "merge_judge_parts", "judge_parts_dir", "job_logs", "finish", "main"]

log = logging.getLogger("refusal.report.job")


def judge_parts_dir() -> Path:
    """``cache_dir()/judge-parts/``: the grades each job added, waiting to be merged into the shared cache."""
    return cache_dir() / "judge-parts"


def _shared_judge_cache() -> Path:
    return cache_dir() / "judge.sqlite"


def _export_grades(job_db: Path, since: float, name: str) -> int:
    """Leave the grades a job added to its cache (created since ``since``) in :func:`judge_parts_dir`."""
    from refusal.evaluation.judge.cache import merge_into

    if not job_db.exists():
        return 0
    part = job_db.with_name("part.sqlite")
    n = merge_into(part, [job_db], since=since)
    if n:
        dst = judge_parts_dir() / f"{name}-{uuid.uuid4().hex[:8]}.sqlite"
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name("." + dst.name + ".tmp")
        shutil.copyfile(part, tmp)
        os.replace(tmp, dst)
    return n


def merge_judge_parts() -> int:
    """Merge every job's new grades (:func:`judge_parts_dir`) into the shared judge cache, then delete them.

    The one writer of the shared cache: it merges into a copy on the local disk and renames the copy over the
    shared file, so a job that copies the shared file meanwhile reads a complete one. Returns the grades added.
    """
    from refusal.evaluation.judge.cache import merge_into

    parts = sorted(judge_parts_dir().glob("*.sqlite")) if judge_parts_dir().is_dir() else []
    if not parts:
        return 0
    shared = _shared_judge_cache()
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "judge.sqlite"
        if shared.exists():
            shutil.copyfile(shared, local)
        n = merge_into(local, parts)
        staged = shared.with_name(f".{shared.name}.{uuid.uuid4().hex[:8]}.tmp")
        shutil.copyfile(local, staged)
        os.replace(staged, shared)
    for p in parts:
        p.unlink()
    log.info("judge cache: %d new grade(s) from %d job(s) merged into %s", n, len(parts), shared)
    return n


def run_job(stage: str, model: str | None = None, models: list[str] | None = None, threads: int = 1,
            judges: bool = False) -> float:
    """Execute ``notebooks/<stage>.ipynb`` for ``model`` (or, cross-model, over ``models``); returns its seconds.

    Raises:
        RuntimeError: the notebook failed (papermill's error, the failing cell's traceback in the log notebook),
            or finished without writing its manifest.
    """
    import papermill as pm

    if (model is None) == (models is None):
        raise ValueError("give a model, or the models of a cross-model stage")
    nb = NOTEBOOKS_DIR / f"{stage}.ipynb"
    if not nb.is_file():
        raise FileNotFoundError(f"{nb}: no such stage notebook (run `make notebooks`)")
    page, manifest = REPO_ROOT / page_path(stage, model), REPO_ROOT / manifest_path(stage, model)
    log_nb = REPO_ROOT / log_paths(stage, model)[1]
    log_nb.parent.mkdir(parents=True, exist_ok=True)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    parameters = {"model": model} if model is not None else {"models": ",".join(models or [])}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="refusal-job-") as tmp:
        job_db = Path(tmp) / "judge.sqlite"
        if judges and _shared_judge_cache().exists():
            shutil.copyfile(_shared_judge_cache(), job_db)
        os.environ["REFUSAL_JUDGE_CACHE"] = str(job_db)
        try:
            pm.execute_notebook(str(nb), str(log_nb), parameters=parameters, cwd=str(NOTEBOOKS_DIR),
                                kernel_name="python3", progress_bar=False, log_output=True)
        finally:
            added = _export_grades(job_db, started, f"{model or 'cross'}-{stage}")
            if added:
                log.info("%d new judge grade(s) left for the merge", added)
    if not manifest.is_file():
        raise RuntimeError(f"{nb.name} finished without writing {manifest_path(stage, model)}")
    page.parent.mkdir(parents=True, exist_ok=True)
    os.replace(log_nb, page)
    return time.time() - started


def job_logs(since: float) -> dict[str, str]:
    """The last line of every job log under ``logs/`` written since ``since`` (a time): ``{log: line}``."""
    out = {}
    root = REPO_ROOT / LOGS_DIR
    for p in sorted(root.rglob("*.log")) if root.is_dir() else []:
        if p.stat().st_mtime >= since:
            lines = [ln for ln in p.read_text(errors="replace").splitlines() if ln.strip()]
            out[rel(p)] = lines[-1] if lines else ""
    return out


def finish(started: float, failed: bool, site: bool) -> None:
    """The end of a run, failed or not: merge the jobs' judge grades into the shared cache and say how many jobs
    ran; after a failure, name the failed jobs (the jobs whose log ends with ``FAILED``) and build the site from
    what has run (when ``site``)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    merge_judge_parts()
    logs = job_logs(started)
    bad = [f"{line}" for line in logs.values() if " FAILED" in line]
    log.info("report: %d job(s) ran in %.0f s, %d failed%s", len(logs), time.time() - started, len(bad),
             "".join(f"\n  {b}" for b in bad))
    if failed and site:
        from refusal.report import site as S

        log.info("building the site from what has run")
        try:
            S.build()
        except Exception as e:  # the site's own checks; the run has failed already
            log.error("site: %s", e)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m refusal.report.job", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", help="a stage of refusal.config.STAGES or CROSS_STAGES")
    ap.add_argument("model", nargs="?", help="the registry entry (a per-model stage)")
    ap.add_argument("--models", help="comma-separated registry entries (a cross-model stage)")
    ap.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads of the kernel (default 1)")
    ap.add_argument("--judges", action="store_true", help="the stage may judge: start from the shared judge cache")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    who = args.model or "all"
    models = None if args.models is None else [m for m in args.models.split(",") if m]
    log_nb = log_paths(args.stage, args.model)[1]
    try:
        secs = run_job(args.stage, args.model, models, max(1, args.threads), args.judges)
    except Exception as e:  # papermill raises PapermillExecutionError with the cell's traceback
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        log.error("[%s] %s FAILED: %s (executed notebook: %s)", who, args.stage,
                  lines[-1] if lines else type(e).__name__, log_nb)
        return 1
    log.info("[%s] %s done in %.1f s", who, args.stage, secs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
