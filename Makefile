# Two commands matter: `make demo` (the main job end to end) and `make test`. Both install what they need.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
WEB_STAMP := web/node_modules/.installed
WEB_SOURCES := $(shell find web/src -type f 2>/dev/null) web/index.html web/vite.config.ts web/tsconfig.json

.PHONY: install web chromium demo serve test bench clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The web front end (web/): pinned npm packages, then type-check and build into web/dist (served by the app).
$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

web/dist/index.html: $(WEB_STAMP) $(WEB_SOURCES)
	cd web && npm run --silent build

web: web/dist/index.html

# The browser the end-to-end test drives: Debian's Chromium (browser downloads are impossible here).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
		else echo "Chromium is missing: run 'apt-get install -y --no-install-recommends chromium' as root" >&2; exit 1; fi; \
	fi

install: $(STAMP) $(NODE_STAMP) web

demo: install
	$(BIN)/python -m devtools.demo

serve: install
	$(BIN)/python -m devtools.serve

# Layers first (import-linter, .importlinter): an upward import fails here, before any test runs.
test: install chromium
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q

# The pipeline's speed and memory, the fan-out with 1 and 2 worker processes (5 M rows; FANOUT_ROWS=…), then load on
# the API while two large files generate (devtools/load.py).
bench: install
	$(BIN)/python -m devtools.bench $(if $(ROWS),--rows $(ROWS))
	$(BIN)/python -m devtools.fanout_bench $(if $(FANOUT_ROWS),--rows $(FANOUT_ROWS))
	$(BIN)/python -m devtools.load --users 50 --seconds 60

clean:
	rm -rf $(VENV) node_modules web/node_modules web/dist .pytest_cache .run
