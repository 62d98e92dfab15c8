# Two commands matter: `make demo` and `make test`. Everything else serves them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall when the package definition or the C decoder it compiles changes.
INSTALL_INPUTS := pyproject.toml hatch_build.py src/trellis/contracts/_native.c
STAMP := $(VENV)/.installed-$(shell cat $(INSTALL_INPUTS) | cksum | cut -d' ' -f1)
ASSETS := src/trellis/ui/static/vendor/.installed-$(shell cat package-lock.json 2>/dev/null | cksum | cut -d' ' -f1)

.PHONY: demo test lint typecheck pytest install assets bench clean

demo: install assets  ## install, then run the platform with a simulated fleet and the dashboard
	$(BIN)/trellis demo

test: install assets lint typecheck pytest  ## ruff, mypy --strict on src/, pytest

install: $(STAMP)

$(STAMP): $(INSTALL_INPUTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,parquet,ml]'
	rm -f $(VENV)/.installed-* && touch $@

assets: $(ASSETS)

$(ASSETS): package.json package-lock.json scripts/copy_assets.py
	npm ci --ignore-scripts --no-audit --no-fund
	$(BIN)/python scripts/copy_assets.py
	rm -f src/trellis/ui/static/vendor/.installed-* && touch $@

lint: install
	$(BIN)/ruff check src tests bench scripts hatch_build.py
	$(BIN)/ruff format --check src tests bench scripts hatch_build.py

typecheck: install
	$(BIN)/mypy

pytest: install assets
	$(BIN)/pytest

bench: install  ## print benchmark figures as JSON lines (quick mode)
	$(BIN)/python bench/ingest_embedded.py --quick
	$(BIN)/python bench/alerts.py --quick
	$(BIN)/python bench/storage.py --quick
	$(BIN)/python bench/inference.py --quick
	$(BIN)/python bench/rules.py --quick
	$(BIN)/python bench/semantic.py --quick
	$(BIN)/python bench/contracts.py --quick

clean:
	rm -rf $(VENV) node_modules src/trellis/ui/static/vendor src/trellis/contracts/_native*.so .trellis .mypy_cache .ruff_cache .pytest_cache
