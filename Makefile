# Two commands matter: `make demo` (the main job end to end) and `make test`. Both install what they need.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: install demo serve test bench clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP) $(NODE_STAMP)

demo: install
	$(BIN)/python -m devtools.demo

serve: install
	$(BIN)/python -m devtools.serve

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m devtools.bench

clean:
	rm -rf $(VENV) node_modules .pytest_cache .run
