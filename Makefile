# Carrot Coder Gateway. `make run` starts the gateway on embedded defaults; `make test` runs the suite.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

# Slow test groups (pytest markers), each with its own setup script; `make test` runs them all.
SLOW_GROUPS ?= clients dbmode real_model

.PHONY: setup test-deps run test test-fast test-dbmode test-clients test-real-model bench clean

$(STAMP): pyproject.toml scripts/setup_models.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[gateway,review,test]'
	PY=$(PY) bash scripts/setup_models.sh   # offline embedding model for RAG (.state/models)
	touch $(STAMP)

setup: $(STAMP)

# Prometheus (Debian package) for the dashboard test; pip cannot install it.
test-deps: setup
	sh scripts/setup_ops.sh

# The dbmode group alone (`make test SLOW_GROUPS=dbmode` runs it after the fast suite): LiteLLM's
# database mode on Prisma's wasm engines (test infrastructure; npm packages cached in
# $${CARROT_CACHE_DIR:-~/.cache/carrot}/dbmode) + Chromium for the admin-UI test, then those tests.
test-dbmode: setup
	PY=$(PY) bash scripts/setup_dbmode.sh
	$(PY) -m pytest -m dbmode

run: setup
	$(PY) -m carrot_hooks.serve

test: setup test-deps
	PY=$(PY) bash scripts/run_tests.sh $(SLOW_GROUPS)

test-fast: setup test-deps
	PY=$(PY) bash scripts/run_tests.sh

# Real coding clients (pinned in scripts/clients.txt, cached outside the clone), each run headless
# against the real proxy and the fake upstream; `make test SLOW_GROUPS=clients` runs them after the rest.
test-clients: setup
	PYTHON=$(PYTHON) bash scripts/setup_clients.sh
	$(PY) -m pytest -m clients

# carrot-eval against a real small model (SmolLM2-135M on llama-cpp-python): the first run compiles
# llama-cpp-python (7-15 min on 2 cores) into ${CARROT_CACHE_DIR:-~/.cache/carrot}; later runs take seconds.
# (the group `real_model` of scripts/run_tests.sh alone)
test-real-model: setup
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
