# Two commands on a fresh machine: `make demo` (set up + run the main job), `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml Makefile | cksum | cut -d' ' -f1)

.PHONY: setup demo test docs serve ui lock clean

setup: $(STAMP)

# requirements.lock pins every package to the versions the tests passed on; uv installs
# them in seconds (pip is the fallback). The package itself is installed editable.
# Bytecode is compiled at install: where PYTHONDONTWRITEBYTECODE is set (as it is on
# this project's build machines) Python would otherwise compile every module from source
# in every process, and `import mlflow` alone took 7.7 s instead of 3.2.
$(STAMP): requirements.lock pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else "Python 3.11 is required, found %d.%d" % v)'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -r requirements.lock \
	  || $(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e . \
	  || $(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m compileall -q -j 0 mlops_assets bento benchmarks definitions.py
	rm -f $(VENV)/.installed-* && touch $@

demo: setup
	$(BIN)/mlops demo

test: setup
	$(BIN)/pytest

docs: setup
	$(BIN)/mkdocs build --strict

serve: setup
	$(BIN)/mlops serve

ui: setup
	$(BIN)/mlops ui

# Re-resolve the pins after changing pyproject.toml, then run `make test` before committing.
lock: setup
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock --no-header --annotation-style line

clean:
	rm -rf $(VENV) .mlops site
