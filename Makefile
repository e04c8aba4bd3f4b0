# The two commands a newcomer needs: `make demo` and `make test`.
# Each creates .venv and installs the project on first use; the second time the install is a no-op.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Let Python keep its compiled modules (and pytest its rewritten test modules) in __pycache__:
# with PYTHONDONTWRITEBYTECODE set, every test process and every CLI subprocess recompiles them
# (collecting the tests alone takes 8 s instead of 3).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-fast lint bench chaos clean install

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m demo $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The edit loop: everything but the slow scenario, chaos, bench and browser tests, on two
# pytest-xdist workers (FAST_WORKERS=0: one process). The tests share nothing a second worker
# could collide with: sandboxes listen on ports the system picks, PostgreSQL tests make their own
# database, Redis keys carry a random suffix or the sandbox's port, tmux servers a random socket.
FAST_WORKERS ?= 2
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not browser" -n $(FAST_WORKERS) $(PYTEST_ARGS)

# Style, the dependency rule (import-linter contracts in pyproject.toml) and types (mypy).
lint: $(STAMP)
	$(BIN)/ruff check b24app handlers sandbox tests bench demo chaos
	$(BIN)/ruff format --check b24app handlers sandbox tests bench demo chaos
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

chaos: $(STAMP)
	$(BIN)/python -m chaos $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
