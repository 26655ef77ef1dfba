# Two commands set everything up on a fresh machine:
#   make run   - create .venv, install ctxsync, run context-sync on sample_data/ (embedded: files, local Flink)
#   make test  - install dev extras and test servers, run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
OUT ?= out

.PHONY: run test install install-dev check-java bench clean

$(VENV)/.installed: pyproject.toml
	@command -v python3 >/dev/null || { echo "python3 (3.10-3.12) is required"; exit 1; }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e '.[dev,io,quality,servers]'
	bash scripts/install-system-deps.sh
	touch $@

check-java:
	@bash scripts/check-java.sh

install: $(VENV)/.installed check-java

install-dev: $(VENV)/.installed-dev check-java

run: install
	$(VENV)/bin/ctxsync run context-sync --input sample_data/context_events.jsonl --out $(OUT)

test: install-dev
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) bench/throughput.py --runner flink

clean:
	rm -rf $(OUT) .pytest_cache build *.egg-info
