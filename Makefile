# Phoenix: `make drill` runs a whole disaster and recovery in the local lab; `make test` the tests.
PYTHON ?= python3
APT_PACKAGES = systemd-container debootstrap apt-cacher-ng iproute2 openssh-client openssh-sftp-server git \
               sqlite3 restic rclone dnsutils pebble openssl curl ssh-audit

.PHONY: deps lock lock-runtime lint test test-unit test-lab drill bench lab-down

deps:  ## the Debian packages, exactly the locked Python packages (hashes checked), then Phoenix
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); fi
	$(PYTHON) -m pip install -q --require-hashes --no-deps -r requirements.lock
	$(PYTHON) -m pip install -q --no-deps -e .

lock:  ## re-resolve requirements.lock from pyproject.toml's bounds (PyPI, with hashes)
	uv pip compile pyproject.toml --extra test --extra lint --generate-hashes \
		--python-version 3.11 --index-url https://pypi.org/simple -o requirements.lock
	$(MAKE) lock-runtime

# What an operator's machine installs: the same versions as requirements.lock, without the
# test and lint tools (the development lock's pins are its constraints).
lock-runtime:  ## requirements-runtime.lock from requirements.lock's pins (with hashes)
	@pins=$$(mktemp); sed -n 's/^\([A-Za-z0-9_.-]*==[^ \\]*\).*/\1/p' requirements.lock > "$$pins"; \
	uv pip compile pyproject.toml --generate-hashes --python-version 3.11 \
		--index-url https://pypi.org/simple --custom-compile-command "make lock-runtime" \
		--no-annotate --quiet -c "$$pins" -o requirements-runtime.lock; rc=$$?; rm -f "$$pins"; exit $$rc

# Every Python file but the tests': the host programs (files/) and the lab's stand-ins too.
LINTED = phoenix tasks facts checks files benchmarks group_data inventories contracts \
         deploy.py adopt.py

lint:  ## ruff's rules and its format, then mypy (rules and reasons in pyproject.toml)
	$(PYTHON) -m ruff check $(LINTED)
	$(PYTHON) -m ruff format --check $(LINTED)
	$(PYTHON) -m mypy

# The lab tests run in three labs side by side: BESIDE and THIRD (the longest files, each test
# with droplets of its own) each in a lab of its own (tests/lab/beside.py), the rest in the
# default lab; the unit tests beside them all (their own tmp folders, labs and ports: they share
# nothing). The outputs run beside are printed after; any failing fails the target.
BESIDE = tests/lab/test_drill.py
THIRD = tests/lab/test_backups.py tests/lab/test_adopt.py
test: deps lint  ## lint, then unit tests beside lab tests in three labs (root; skipped without it)
	@unitlog=$$(mktemp); besidelog=$$(mktemp); thirdlog=$$(mktemp); \
	$(PYTHON) -m pytest tests/unit > "$$unitlog" 2>&1 & unit=$$!; \
	$(PYTHON) -m tests.lab.beside $(BESIDE) > "$$besidelog" 2>&1 & beside=$$!; \
	$(PYTHON) -m tests.lab.beside --lab third $(THIRD) > "$$thirdlog" 2>&1 & third=$$!; \
	$(PYTHON) -m pytest tests/lab $(addprefix --ignore=,$(BESIDE) $(THIRD)); lab=$$?; \
	wait $$beside; besides=$$?; wait $$third; thirds=$$?; wait $$unit; units=$$?; \
	echo "== $(BESIDE), in a lab of its own beside the others"; cat "$$besidelog"; \
	echo "== $(THIRD), in a third lab beside the others"; cat "$$thirdlog"; \
	echo "== the unit tests, run beside the lab tests"; cat "$$unitlog"; \
	rm -f "$$unitlog" "$$besidelog" "$$thirdlog"; \
	[ $$lab -eq 0 ] && [ $$besides -eq 0 ] && [ $$thirds -eq 0 ] && [ $$units -eq 0 ]

test-unit:
	$(PYTHON) -m pytest tests/unit

test-lab:
	$(PYTHON) -m pytest tests/lab

drill: deps  ## the whole disaster and recovery in the lab, with its report
	$(PYTHON) -m phoenix drill

bench: deps
	$(PYTHON) benchmarks/run.py

lab-down:  ## every lab make test brings up: the default one and the two beside it
	$(PYTHON) -m phoenix lab down
	$(PYTHON) -m tests.lab.beside --down
	$(PYTHON) -m tests.lab.beside --lab third --down
