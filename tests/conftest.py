"""Shared fixtures. Models are loaded once per session (they are cached on disk after the first load), in float32
whatever their entry's ``cpu_dtype`` (``auto`` means bfloat16 on a CPU with bf16 instructions): the numerical tests
compare with float32 tolerances."""

from __future__ import annotations

import contextlib
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def smollm():
    from refusal.models import load_model

    return load_model("smollm2_135m", dtype="float32")


@pytest.fixture(scope="session")
def qwen05():
    from refusal.models import load_model

    return load_model("qwen25_coder_05b", dtype="float32")


@contextlib.contextmanager
def papermill_stages(tmp_path_factory, model: str, stages: list[str], params: dict, extra: list[tuple[str, dict]] = ()):
    """Execute stage notebooks by papermill, as `make report` does, into a temporary runs/ folder.

    ``stages`` run with ``{"model": model, **params.get(stage, {})}``; ``extra`` notebooks with their own
    parameters after them. Yields (runs/<model>, folder of executed notebooks, the environment used).
    """
    import papermill as pm

    from refusal.paths import NOTEBOOKS_DIR

    runs = tmp_path_factory.mktemp("runs")
    out = tmp_path_factory.mktemp("executed")
    env = {"REFUSAL_RUNS": str(runs), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        todo = [(s, {"model": model, **params.get(s, {})}) for s in stages] + list(extra)
        for stage, p in todo:
            pm.execute_notebook(str(NOTEBOOKS_DIR / f"{stage}.ipynb"), str(out / f"{stage}.ipynb"), parameters=p,
                                cwd=str(NOTEBOOKS_DIR), kernel_name="python3", progress_bar=False)
        yield runs / model, out, env
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


MODEL_FIXTURES = {"smollm", "qwen05", "smollm_bridge", "qwen_bridge"}


def pytest_collection_modifyitems(config, items):
    """Every test that loads a real model through a shared fixture is `slow` (`make test-fast` leaves it out)."""
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
