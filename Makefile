# Two commands set everything up on a fresh machine:
#   make demo   -> installs sigscan (dev environment in .venv) and runs `sigscan demo` on bundled data
#   make test   -> installs the same environment and runs the test-suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= sigscan-demo

.PHONY: install browser demo test test-all bench docs doc-deps tutorials lint

$(BIN)/sigscan: pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements-dev.txt
	touch $(BIN)/sigscan

install: $(BIN)/sigscan

demo: install
	$(BIN)/sigscan demo --out $(DEMO_OUT)

# headless Chromium + chromedriver for the browser tests (tests/pl/test_concept_explorer.py): installed with apt-get
# when running as root on a machine that lacks them; otherwise a no-op (those tests then skip, saying why)
browser:
	@if command -v chromedriver >/dev/null 2>&1 && { command -v chromium >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1; }; then \
		echo "browser: chromium and chromedriver found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; } \
			|| echo "browser: apt-get could not install chromium; the browser tests will be skipped"; \
	else \
		echo "browser: chromium/chromedriver missing and not root with apt-get; the browser tests will be skipped"; \
	fi

test: install browser
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m ""

bench: install
	$(BIN)/python benchmarks/attributions.py

doc-deps: install
	$(BIN)/python -m pip install -e ".[doc]"

# the docs render the tutorials' committed outputs (nothing is executed); warnings are errors
docs: doc-deps
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

# execute every tutorial notebook (CI=true selects their smaller setting); `make tutorials TUTORIALS_ARGS=--write`
# also writes the executed notebooks back beside their .py twins
tutorials: doc-deps
	$(BIN)/python docs/execute_tutorials.py $(TUTORIALS_ARGS)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
