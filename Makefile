# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Offline by default: nothing here needs the Hub, and a missing network must fail fast, not hang.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
DEMO_OUT := runs/demo-ner

.PHONY: install demo test bench clean

install: $(STAMP)

# torch is pinned to the CPU wheel first, so nothing later pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,bench]'
	touch $(STAMP)

demo: install
	$(BIN)/taskcli finetune token-classification --smoke --output-dir $(DEMO_OUT) --overwrite
	$(BIN)/taskcli eval token-classification --model $(DEMO_OUT) --smoke
	$(BIN)/taskcli infer token-classification --model $(DEMO_OUT) \
		"Alice Martin works for Globex in Tokyo ." \
		"Yesterday Hiro Tanaka met Emma Weber in Berlin ." \
		"Initech opened a new office in Lisbon ."

# Test files run in parallel worker processes (pytest-xdist), a whole file per worker so module fixtures train
# once; tests/conftest.py gives each worker its share of the cores, shares `trained` models between workers and
# starts the slowest files first. TEST_WORKERS=0 runs in one process. Python caches bytecode for the run even where
# PYTHONDONTWRITEBYTECODE is set (as on the machines this was measured on): each test process and each `taskcli` it
# starts would compile taskcli's and the tests' modules again (~0.35 s a process).
TEST_WORKERS ?= auto
test: install
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile --no-loadscope-reorder

# Bytecode cached as an installed package has it: start-up figures are a user's, not a recompile's.
bench: install
	PYTHONDONTWRITEBYTECODE= $(BIN)/python bench/run.py

clean:
	rm -rf runs .pytest_cache
