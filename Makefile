# Two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ADDR ?= 127.0.0.1:8000

.PHONY: run test bench install install-test migrate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements.txt requirements-test.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

migrate: install
	$(BIN)/python manage.py migrate --noinput

# Everything in one process on http://$(ADDR): HTTP, WebSocket and the orchestrator worker.
run: migrate
	$(BIN)/python manage.py ensure_demo_user
	$(BIN)/python manage.py serve $(ADDR)

# The whole suite on the embedded default (SQLite), then the engine and web suites again on a throwaway
# PostgreSQL cluster, so the two databases cannot drift.
test: install-test
	$(BIN)/python -m pytest
	$(BIN)/python -m tests.with_postgres tests/orchestrator tests/harness -q --ignore=tests/harness/test_sqlite_backend.py

# Benchmarks print a table and write JSON under bench/results/ (see docs/performance.md). Not run by tests.
bench: install-test migrate
	$(BIN)/python bench/stop_latency.py
	$(BIN)/python bench/first_token.py
	$(BIN)/python bench/stream_fanout.py
	$(BIN)/python bench/scaleout.py
	$(BIN)/python bench/sandbox.py
	$(BIN)/python bench/uploads.py
	$(BIN)/python bench/mcp_cancel.py
	$(BIN)/python bench/sessions_scale.py

clean:
	rm -rf $(VENV) var
