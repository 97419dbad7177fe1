# Shortcuts; each is also a plain command in README.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install report report-full example test bench matrix chaos doctor lab clean

$(BIN)/fanout: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(BIN)/fanout

report: install            ## the validation report (quick runs) into reports/latest/ (git-ignored)
	$(BIN)/fanout report

report-full: install       ## the validation report with the scenario files' full lengths (the soak: an hour), into reports/latest/
	$(BIN)/fanout report --full

example: install           ## regenerate the committed example (full mode: the soak makes it over an hour) in reports/example/, deliberately
	rm -rf reports/example
	$(BIN)/fanout report --full --out reports/example
	rm -rf reports/example/runs/*-soak-*/parts   # the soak is kept as its summary: its rows are GBs

test: install              ## the test suite (starts its own throwaway redis-servers)
	$(BIN)/python -m pytest

bench: install             ## load and latency benchmarks (prints a table, writes benchmarks/results/)
	$(BIN)/python -m benchmarks

matrix: install            ## the server-compatibility matrix (every server found here) into docs/compatibility.md
	$(BIN)/python -m benchmarks.matrix

chaos: install             ## the reliability suite at full sizes (> 10 min) into docs/reliability.md; CHAOS_ARGS=--small: CI sizes
	$(BIN)/python -m benchmarks.chaos $(CHAOS_ARGS)

doctor: install            ## which Redis/Valkey servers are installed, which one runs, why
	$(BIN)/fanout doctor

lab: install               ## JupyterLab on the notebooks
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf data/runs reports/latest reports/*.ipynb .pytest_cache
