# Developer and CI entry points. `make test` works on a fresh Debian machine as root
# with only python3 (pip, venv) installed.

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

# binary:Debian-package pairs the tests need (sshd and ucarp live in /usr/sbin; mariadb
# is the MySQL client the admin client runs).
DEPS := sqlite3:sqlite3 ssh:openssh-client sshd:openssh-server ucarp:ucarp ip:iproute2 \
        mariadb:mariadb-client

.PHONY: venv test deps demo clean

venv: $(STAMP)

$(STAMP): setup.cfg
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[tests]'
	touch $@

# The unit and functional layers (separate files, ports and directories per test) run on
# TEST_JOBS workers; then integration, the lab's e2e and the quick bench, mostly waiting on
# daemons, on WAIT_JOBS workers grouped by tests/conftest.py (every e2e module on one worker,
# the modules moving 127.0.0.77 on lo one after the other, each daemon module once).
# PYTEST_ARGS: one serial run with these arguments instead.
TEST_JOBS ?= 4
WAIT_JOBS ?= 2

test: venv deps
ifeq ($(strip $(PYTEST_ARGS)),)
	$(PY) -m pytest -ra -n $(TEST_JOBS) tests/unit tests/functional
	$(PY) -m pytest -ra -n $(WAIT_JOBS) --dist loadgroup tests/integration tests/e2e tests/bench
else
	$(PY) -m pytest -ra $(PYTEST_ARGS)
endif

deps:
	@missing=""; \
	for pair in $(DEPS); do \
	  bin=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$bin >/dev/null 2>&1 || [ -x /usr/sbin/$$bin ] || missing="$$missing $$pkg"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "deps: missing Debian packages:$$missing (not root or no apt-get: continuing without them)"; \
	  exit 0; \
	fi; \
	echo "deps: installing$$missing"; \
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing

demo: venv deps
	$(PY) demo/demo.py

# Benchmarks (bench/), written to docs/BENCHMARKS.md and the README's table; QUICK=1: one quick
# run of each part (README untouched); PARTS=changed,lab: only those parts (README untouched).
.PHONY: bench
bench: venv deps
	$(PY) -m bench.run $(if $(filter 1,$(QUICK)),--quick) $(if $(PARTS),--parts $(PARTS)) \
		$(if $(filter 1,$(QUICK))$(PARTS),,--readme README.md)

# Plant each guard's removal in a temporary copy and run the fast tests there (bench/mutations.py);
# not part of `make test`. ONLY="name ...": only these mutations.
.PHONY: mutations
mutations: venv
	$(PY) -m bench.mutations $(if $(ONLY),--only $(ONLY))

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .coverage
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
