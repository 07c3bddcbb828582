# Two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP     := $(VENV)/.dev-installed
OPA_BINDINGS  := opa-golib-python-bindings==0.4.4

.PHONY: run install install-dev test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUNTIME_STAMP): requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --ignore-requires-python $(OPA_BINDINGS)
	touch $@

install: $(RUNTIME_STAMP)
install-dev: $(DEV_STAMP)

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	@echo
	@echo "Egress Portal is starting at http://$${EGRESS_HOST:-127.0.0.1}:$${EGRESS_PORT:-8000}/"
	@echo "OPA bundle server (long polls) at http://$${EGRESS_HOST:-127.0.0.1}:$${EGRESS_BUNDLES_PORT:-8081}/bundles/egress.tar.gz"
	@echo "Web server, bundle server, Celery worker and Celery beat run below; Ctrl-C stops all four."
	@echo
	$(BIN)/honcho start -f Procfile

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The manual (docs/) is built with --strict, so a broken link or anchor fails the lint; not
# --quiet, which hides the warnings strict mode counts. The variable silences a theme banner.
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports --no-cache
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir var/site

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install-dev
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
