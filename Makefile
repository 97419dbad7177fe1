# Shortcuts; each is also a plain command in README.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

#: the default report's scenarios without the soak (make example SOAK_RUN=DIR adds a soak run already made)
EXAMPLE_SCENARIOS = standard,stress,scale-10,load-1k,standard@streams,cluster/sharded-10

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

example: install           ## regenerate the committed example in reports/example/, deliberately: full mode, each configuration 5 times interleaved (~25 min), the soak once (30+ min; SOAK_RUN=DIR reuses a soak run folder instead)
	rm -rf reports/example.new /tmp/fanout-example
ifdef SOAK_RUN
	$(BIN)/fanout report --full --scenarios $(EXAMPLE_SCENARIOS) --out /tmp/fanout-example
	$(BIN)/fanout report --from-runs /tmp/fanout-example $(SOAK_RUN) --out reports/example.new
else
	$(BIN)/fanout report --full --out reports/example.new
endif
	rm -rf reports/example.new/runs/*-soak-*/parts   # the soak is kept as its summary: its rows are GBs
	rm -rf reports/example && mv reports/example.new reports/example

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

lab: install               ## JupyterLab on a working copy of the notebooks (work/notebooks/, git-ignored)
	$(BIN)/fanout lab

clean:
	rm -rf data/runs reports/latest reports/*.ipynb .pytest_cache
