# The two commands of the README: `make test` and `make run`.
# Everything a fresh Debian machine needs is installed from here, nothing by hand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Debian packages the test suite and benchmarks use as real peers, installed with apt-get
# only when missing: dig and nsupdate, kdig, ddclient, inadyn, NSD and Knot, dnsperf, wrk, curl,
# headless Chromium for the browser test, and for the relay benchmark socat and OpenSSH.
DEB_PACKAGES := bind9-dnsutils knot-dnsutils ddclient inadyn nsd knot dnsperf wrk curl chromium systemd \
	socat openssh-client openssh-server
STATE_DIR ?= ./var
BASE_PORT ?= 5300

.PHONY: test run lint typecheck unit deps bench clean

test: $(STAMP) deps lint typecheck
	$(BIN)/pytest

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

deps:
	@missing=""; \
	for pkg in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $$missing; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

bench: $(STAMP) deps
	$(BIN)/python bench/protocol.py
	$(BIN)/python bench/dns.py
	$(BIN)/python bench/relay.py
	$(BIN)/python bench/relay_rps.py
	$(BIN)/python bench/relay_wan.py
	$(BIN)/python bench/relay_parts.py
	$(BIN)/python bench/tunnels.py

run: $(STAMP)
	$(BIN)/nascloud run --state-dir $(STATE_DIR) --base-port $(BASE_PORT)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
