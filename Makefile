# The two commands of the README: `make test` and `make run`.
# Everything a fresh Debian machine needs is installed from here, nothing by hand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Debian packages the test suite and benchmarks use as real peers, installed with apt-get
# only when missing: dig and nsupdate, kdig, ddclient, inadyn, NSD and Knot, dnsperf, wrk, curl,
# headless Chromium for the browser test, for the relay benchmark socat and OpenSSH, gcc for
# the fsync-holding shim of the durability test (tests/holdsync.c), Pebble, the ACME CA the
# agent's certificate tests use, certutil, which gives the browser test Pebble's root, and
# lego and certbot, the ACME clients owners run themselves, and argon2, the reference
# implementation the portal's sign-in benchmark compares with, and PostgreSQL, the registry of a
# fleet (tests start their own server from its binaries; libpq is psycopg's client library).
DEB_PACKAGES := bind9-dnsutils knot-dnsutils ddclient inadyn nsd knot dnsperf wrk curl chromium systemd \
	socat openssh-client openssh-server gcc libc6-dev pebble libnss3-tools lego certbot \
	python3-certbot-dns-rfc2136 argon2 postgresql libpq5
STATE_DIR ?= ./var
BASE_PORT ?= 5300
# `make fuzz`: seconds per target; every tests/fuzz/fuzz_<name>.py is one target.
FUZZ_SECONDS ?= 300
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.py,%,$(wildcard tests/fuzz/fuzz_*.py))
FUZZ_STAMP := $(VENV)/.fuzz-stamp

.PHONY: test run lint typecheck unit deps bench clean fuzz fuzz-minimize

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
	$(BIN)/python bench/everything.py
	$(BIN)/python bench/portal.py

# Fuzz each target for FUZZ_SECONDS into its corpus; crashes land in tests/fuzz/crashes/<name>/.
# Every target runs even when one crashes; the exit status says whether any did.
fuzz: $(FUZZ_STAMP)
	@failed=""; \
	for target in $(FUZZ_TARGETS); do \
		mkdir -p tests/fuzz/corpus/$$target tests/fuzz/crashes/$$target; \
		echo "== fuzz_$$target for $(FUZZ_SECONDS) s"; \
		$(BIN)/python -m tests.fuzz.fuzz_$$target tests/fuzz/corpus/$$target \
			-max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
			-artifact_prefix=tests/fuzz/crashes/$$target/ -print_final_stats=1 \
			|| failed="$$failed $$target"; \
	done; \
	if [ -n "$$failed" ]; then echo "crashes in:$$failed"; exit 1; fi

# Shrink every corpus to the inputs that keep its coverage (libFuzzer's -merge=1). A corpus is
# replaced only by a merge that kept something: a merge whose runs failed keeps nothing.
fuzz-minimize: $(FUZZ_STAMP)
	@for target in $(FUZZ_TARGETS); do \
		corpus=tests/fuzz/corpus/$$target; min=tests/fuzz/corpus/.$$target.min; \
		rm -rf $$min && mkdir $$min && \
		$(BIN)/python -m tests.fuzz.fuzz_$$target -merge=1 $$min $$corpus || exit 1; \
		if [ -z "$$(ls -A $$min)" ]; then \
			echo "fuzz_$$target: the merge kept nothing; $$corpus is left as it was"; \
			rm -rf $$min; exit 1; \
		fi; \
		echo "fuzz_$$target: $$(ls $$corpus | wc -l) files -> $$(ls $$min | wc -l)"; \
		rm -rf $$corpus && mv $$min $$corpus; \
	done

$(FUZZ_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,bench,fuzz]'
	touch $@

# exec: no shell in between, so Ctrl-C ends in nascloud run's clean stop (exit 0), not in
# make's "Interrupt" error for a shell that died of SIGINT.
run: $(STAMP)
	exec $(BIN)/nascloud run --state-dir $(STATE_DIR) --base-port $(BASE_PORT)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
