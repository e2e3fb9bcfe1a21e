# Two entry points: `make run` (example pipeline) and `make test` (test suite).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: run test env lint clean

$(BIN)/genembed: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@

env: $(BIN)/genembed

run: env
	$(BIN)/snakemake --cores $(CORES) --printshellcmds

test: env
	$(BIN)/python -m pytest

lint: env
	$(BIN)/snakemake --lint

clean:
	rm -rf results logs benchmarks/logs .snakemake
