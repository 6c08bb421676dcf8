"""The report runner behind ``make report``: every stage notebook for every model, by papermill.

For each model, each stage notebook ``notebooks/NN_*.ipynb`` (``00_organism``
only for organisms; ``05_orthogonalize`` and ``06_benchmark`` not for architectures whose
weight orthogonalization cannot be exact, see :func:`skip_reason`; ``07_compare`` once, over all models) is executed into
``site/models/<model>/NN_stage.ipynb`` (the comparison into ``site/compare/07_compare.ipynb``: Quarto ignores
paths with a component starting with ``_``). A stage is skipped when its
fingerprint (notebook source, the model's params file, the library source,
the upstream stages' manifests, the parameters) is unchanged since its last
successful run, so a second ``make report`` is fast. A failing stage stops
that model's chain with a clear message; other models go on. Then the site is
built (:mod:`refusal.report.site`).

With ``--jobs N`` (``make report`` uses 2), N model chains run at once in
separate processes, longest first, each with ``cores // N`` torch threads.
On 2 cores two one-thread chains do more work per second than one two-thread
chain: small-model generation is partly serial (per-token Python overhead), so a
second thread speeds it up only 1.35-1.4x (measured on 2 cores, 16 prompts x 24
tokens: SmolLM2 4.13 -> 2.97 s, Qwen2.5-0.5B 12.8 -> 9.5 s; forward passes
1.7-1.8x). A cold ``make report`` went from 75.6 to 46.8 min with this and
:mod:`refusal.batching` together. Chains
needing the same cache entry (a converted model, an organism) wait on a file
lock (:func:`refusal.paths.cache_lock`).

Usage: ``python -m refusal.report [--models a,b] [--jobs N] [--force] [--no-site]``
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from refusal.artifacts import read_json, write_json
from refusal.config import COMPARE_STAGE, STAGES, list_models, load_config, skip_reason as stage_skip_reason
from refusal.paths import NOTEBOOKS_DIR, PARAMS_DIR, REPO_ROOT, SITE_DIR, run_dir

log = logging.getLogger("refusal.report")

# longest chain first (measured on 2 cores), so that parallel workers finish together
DEFAULT_MODELS = [
    "qwen25_coder_05b", "smollm2_plantedk", "gemma3_refusal", "smollm2_planted1", "smollm2_refusal", "smollm2_135m",
]
COMPARE = COMPARE_STAGE


def stage_notebooks() -> list[Path]:
    """Per-model stage notebooks ``notebooks/NN_*.ipynb`` in order (the comparison excluded)."""
    return sorted(p for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb") if p.stem != COMPARE)


def _lib_hash() -> str:
    h = hashlib.sha256()
    for p in sorted((REPO_ROOT / "lib" / "refusal").rglob("*")):
        if p.is_file() and p.suffix in (".py", ".json"):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def fingerprint(model: str, nb: Path, lib_hash: str, extra: dict | None = None) -> str:
    """Hash of everything a stage's result depends on."""
    h = hashlib.sha256()
    h.update(nb.read_bytes())
    params = PARAMS_DIR / f"{model}.yaml"
    if params.exists():
        h.update(params.read_bytes())
    h.update(lib_hash.encode())
    for up in sorted(run_dir(model).glob("*/manifest.json")):
        if up.parent.name < nb.stem:
            h.update(up.read_bytes())
    h.update(repr(sorted((extra or {}).items())).encode())
    return h.hexdigest()


def skip_reason(model: str, nb: Path) -> str | None:
    """Why stage ``nb`` does not apply to ``model`` (:func:`refusal.config.skip_reason`), or None when it does."""
    return stage_skip_reason(load_config(model), nb.stem) if nb.stem in STAGES else None


def run_stage(model: str, nb: Path, lib_hash: str, force: bool = False, parameters: dict | None = None,
              out: Path | None = None) -> tuple[str, float]:
    """Run one stage for one model (``model`` names the run folder); returns (status, seconds).

    The executed notebook goes to ``out`` (default ``site/models/<model>/<notebook>``).
    """
    import papermill as pm

    parameters = {"model": model} if parameters is None else parameters
    out = out or SITE_DIR / "models" / model / nb.name
    stamp = run_dir(model) / ".report" / f"{nb.stem}.json"
    fp = fingerprint(model, nb, lib_hash)
    if not force and out.exists() and stamp.exists() and read_json(stamp).get("fingerprint") == fp:
        return "up to date", 0.0
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    pm.execute_notebook(str(nb), str(out), parameters=parameters, cwd=str(NOTEBOOKS_DIR),
                        kernel_name="python3", progress_bar=False, log_output=False)
    secs = time.time() - t0
    write_json(stamp, {"fingerprint": fp, "seconds": round(secs, 1)})
    return "ran", secs


def run_chain(model: str, lib_hash: str, force: bool = False) -> list[str]:
    """Every applicable stage of one model, in order; stops at the first failure. Returns the failed stages."""
    t_model = time.time()
    failures: list[str] = []
    for nb in stage_notebooks():
        why = skip_reason(model, nb)
        if why is not None:
            if not nb.stem.startswith("00_"):
                log.info("[%s] %s does not apply: %s", model, nb.stem, why)
            continue
        log.info("[%s] %s ...", model, nb.stem)
        try:
            status, secs = run_stage(model, nb, lib_hash, force)
        except Exception as e:  # papermill raises PapermillExecutionError with the cell's traceback
            msg = str(e).strip().splitlines()
            log.error("[%s] %s FAILED: %s", model, nb.stem, msg[-1] if msg else type(e).__name__)
            log.error("[%s] stopping this model's chain; see site/models/%s/%s", model, model, nb.name)
            failures.append(f"{model}/{nb.stem}")
            break
        log.info("[%s] %s %s (%.1f s)", model, nb.stem, status, secs)
    log.info("[%s] done in %.1f s", model, time.time() - t_model)
    return failures


def _worker_init(threads: int) -> None:
    """A parallel worker: its stage kernels (child processes) use ``threads`` torch/OpenMP threads."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")


def run_chains(models: list[str], lib_hash: str, force: bool = False, jobs: int = 1) -> list[str]:
    """All models' chains: in this process one after another (``jobs = 1``), else ``jobs`` at a time."""
    if jobs <= 1 or len(models) <= 1:
        return [f for m in models for f in run_chain(m, lib_hash, force)]
    jobs = min(jobs, len(models))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    log.info("[all] %d model chains in parallel, %d torch thread(s) each", jobs, threads)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init, initargs=(threads,)) as pool:
        futures = {m: pool.submit(run_chain, m, lib_hash, force) for m in models}  # FIFO: longest first
    failures: list[str] = []
    for m, f in futures.items():
        try:
            failures += f.result()
        except Exception as e:  # the worker itself died (e.g. out of memory)
            log.error("[%s] chain aborted: %s", m, e)
            failures.append(f"{m}/(worker)")
    return failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="", help="comma-separated registry names (default: the offline set)")
    ap.add_argument("--jobs", type=int, default=1, help="model chains run at once (default 1)")
    ap.add_argument("--force", action="store_true", help="re-run stages even if up to date")
    ap.add_argument("--no-site", action="store_true", help="do not build the site")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    known = set(list_models())
    models = [m for m in (args.models.split(",") if args.models else DEFAULT_MODELS) if m]
    unknown = [m for m in models if m not in known]
    if args.models and unknown:
        log.error("unknown model(s): %s (known: %s)", ", ".join(unknown), ", ".join(sorted(known)))
        return 2
    models = [m for m in models if m in known]  # the default set includes organisms once they exist
    lib_hash = _lib_hash()
    t_all = time.time()
    failures = run_chains(models, lib_hash, args.force, args.jobs)
    compare = NOTEBOOKS_DIR / f"{COMPARE}.ipynb"
    if compare.exists():
        log.info("[all] %s ...", COMPARE)
        try:
            from refusal.report.findings import COMPARE_RUN
            from refusal.report.site import COMPARE_PAGE

            status, secs = run_stage(COMPARE_RUN, compare, lib_hash, force=True, parameters={"models": ",".join(models)},
                                     out=REPO_ROOT / COMPARE_PAGE)
            log.info("[all] %s %s (%.1f s)", COMPARE, status, secs)
        except Exception as e:
            log.error("[all] %s FAILED: %s", COMPARE, e)
            failures.append(COMPARE)
    if not args.no_site:
        from refusal.report import site

        site.build()
    log.info("report finished in %.1f s; %d failure(s)%s", time.time() - t_all, len(failures),
             (": " + ", ".join(failures)) if failures else "")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
