# Phoenix: `make drill` runs a whole disaster and recovery in the local lab; `make test` the tests.
PYTHON ?= python3
APT_PACKAGES = systemd-container debootstrap apt-cacher-ng iproute2 openssh-client git \
               sqlite3 restic dnsutils

.PHONY: deps test test-unit test-lab drill bench lab-down

deps:  ## the Debian packages and the Python package (needs root for apt)
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); fi
	$(PYTHON) -m pip install -q -e '.[test]'

test: deps  ## unit tests, then lab tests (root; skipped without it)
	$(PYTHON) -m pytest

test-unit:
	$(PYTHON) -m pytest tests/unit

test-lab:
	$(PYTHON) -m pytest tests/lab

drill: deps  ## the whole disaster and recovery in the lab, with its report
	phoenix drill

bench: deps
	$(PYTHON) benchmarks/run.py

lab-down:
	phoenix lab down
