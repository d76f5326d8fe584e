# vmkeep — developer entry points. `make demo` and `make test` bootstrap everything they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all check lint types imports docs-check bench bench-smoke clean sysdeps \
	sysdeps-demo install install-service

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "vmkeep needs Python 3.11 or newer")'
	@echo "make: installing vmkeep and its Python dependencies into $(VENV)/"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

# The Debian packages the tests need (as root; not root, it says which are missing), or only
# the demo's: scripts/system-packages*.txt.
sysdeps:
	@bash scripts/install-system-deps.sh

sysdeps-demo:
	@bash scripts/install-system-deps.sh --demo

lint: $(STAMP)
	$(BIN)/ruff check .

types: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

# The docs say what is true now: no "still to come" outside a Plans section.
docs-check: $(STAMP)
	$(BIN)/python scripts/check_docs.py

check: lint types imports docs-check

# Two workers, one test file each at a time: most tests wait on servers (vcsim, sshd, the
# appliance) rather than compute, so two share the CI machine's two cores well.
PYTEST_WORKERS ?= 2

test: sysdeps $(STAMP) check
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile

test-all: sysdeps $(STAMP) check
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m ''

demo: sysdeps-demo $(STAMP)
	$(BIN)/python scripts/demo.py

bench: sysdeps $(STAMP)
	$(BIN)/python scripts/bench/run.py
	$(BIN)/python scripts/bench/sftp.py

bench-smoke: $(STAMP)
	$(BIN)/python scripts/bench/run.py --no-peers --size 64M --runs 1

# For real use, as root (scripts/install.sh): vmkeep in its own virtualenv $(VMKEEP_VENV),
# linked as $(PREFIX)/bin/vmkeep, the path scripts/vmkeep-appliance.service runs;
# install-service also installs that unit (and the vmkeep user). Run again to upgrade.
PREFIX           ?= /usr/local
VMKEEP_VENV      ?= /opt/vmkeep
SYSTEMD_UNIT_DIR ?= /etc/systemd/system

install:
	@PREFIX='$(PREFIX)' VMKEEP_VENV='$(VMKEEP_VENV)' PYTHON='$(PYTHON)' bash scripts/install.sh

install-service:
	@PREFIX='$(PREFIX)' VMKEEP_VENV='$(VMKEEP_VENV)' SYSTEMD_UNIT_DIR='$(SYSTEMD_UNIT_DIR)' \
		PYTHON='$(PYTHON)' bash scripts/install.sh --service

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .demo
