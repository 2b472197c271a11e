# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test lint unit bench runtime fuzz clean

$(VENV)/.installed-base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[data]'
	touch $@

$(VENV)/.installed-test: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	touch $@ $(VENV)/.installed-base

demo: $(VENV)/.installed-base
	$(PY) -m kiln.tour

test: $(VENV)/.installed-test
	$(PY) -m ruff check kiln tests bench d2l
	$(PY) -m pytest

lint: $(VENV)/.installed-test
	$(PY) -m ruff check kiln tests bench d2l

bench: $(VENV)/.installed-base
	$(PY) -m bench

# the C runtime (runtime/Makefile): runtime/build/libkiln_runtime.a/.so and kiln-run
runtime:
	$(MAKE) -C runtime

# its fuzz target over "load from memory" (libFuzzer with clang, else a standalone driver)
fuzz:
	$(MAKE) -C runtime fuzz

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache runtime/build
