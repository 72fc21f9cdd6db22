# Lessonbot: `make demo` runs it locally, `make test` runs the whole suite. `make help` lists the rest.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEMO_LANGUAGE ?= en
PYTEST_ARGS ?=
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: help demo test test-fast lint bench vm vm-stop clean pins

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

# Every package, transitive ones included, comes from the lock with its hashes: pip
# refuses anything unpinned or whose download does not match (pip itself is Debian's).
# Each stamp says which lock the venv holds: the demo needs only the runtime lock, the tests
# and tools the dev lock (the runtime one plus pytest, mypy, ansible, …).
define install_lock
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Lessonbot needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(1)
	touch $@
endef

$(STAMP): requirements.lock requirements-dev.lock
	$(call install_lock,requirements-dev.lock)

# The demo leaves out uWSGI too: the console chat serves its own hooks, and uWSGI ships only as
# source, a build of a minute or more on a newcomer's first run.
$(RUNTIME_STAMP): requirements.lock
	@mkdir -p $(VENV)
	awk '/^uwsgi==/ {skip = 1} skip && !/\\$$/ {skip = 0; next} !skip' requirements.lock > $(VENV)/requirements-demo.lock
	$(call install_lock,$(VENV)/requirements-demo.lock)

# The locks are resolved for Debian 12 (its Python 3.11.2, Linux) whatever machine runs this;
# each is constrained by the one before it, so the tests use the versions production runs.
UV_COMPILE = $(BIN)/uv pip compile --quiet --upgrade --generate-hashes --native-tls --no-strip-extras \
	--python-version 3.11.2 --python-platform linux --custom-compile-command 'make pins'

pins: $(STAMP)  ## Re-resolve requirements*.lock from requirements*.txt (all packages, hashes).
	$(UV_COMPILE) -o requirements.lock requirements.txt
	$(UV_COMPILE) -c requirements.lock -o requirements-dev.lock requirements-dev.txt
	$(UV_COMPILE) -c requirements-dev.lock -o requirements-deploy.lock requirements-deploy.txt

demo:  ## Run Lessonbot locally: SQLite + a console chat, guided through git-basics (DEMO_LANGUAGE=ru for Russian).
	@.ci/system-deps.sh demo
	@$(MAKE) --no-print-directory $(RUNTIME_STAMP)
	@mkdir -p instance
	@$(BIN)/python -m app.cli.devenv .env
	@$(BIN)/python manage.py db upgrade 2>&1 | grep -v '^INFO' || true
	$(BIN)/python manage.py chat --student demo@example.com --name "Demo Student" --workdir instance/demo \
		--language $(DEMO_LANGUAGE) --start git-basics

test:  ## The whole suite, deploy test included (installs what it needs; the deploy test needs root).
	@.ci/system-deps.sh test
	@$(SUDO) tests/deploy/host-setup.sh
	@$(MAKE) --no-print-directory $(STAMP)
	@$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast:  ## The inner loop: stop at the first failure, no deploy test.
	@$(MAKE) --no-print-directory $(STAMP)
	$(BIN)/python -m pytest -x -q -m "not deploy" $(PYTEST_ARGS)

lint:  ## ruff, mypy, the import contracts (pyproject.toml), ansible-lint (production profile) and yamllint.
	$(BIN)/ruff check app tests bench manage.py
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint -q

bench:  ## Benchmarks: figures and ratios to their baselines, measured in the same run.
	@.ci/system-deps.sh bench
	@$(MAKE) --no-print-directory $(STAMP)
	$(BIN)/python -m bench.core_http
	$(BIN)/python -m bench.zulip_path
	$(BIN)/python -m bench.zulip_faults
	$(BIN)/python -m bench.log_shipper
	$(BIN)/python -m bench.backup
	$(BIN)/python -m bench.history
	$(BIN)/python -m bench.github_poll
	$(BIN)/python -m bench.admin_pages

vm:  ## Boot the production stack in a local systemd-nspawn machine and leave it running.
	@$(SUDO) tests/deploy/host-setup.sh
	@$(MAKE) --no-print-directory $(STAMP)
	$(SUDO) $(BIN)/python tests/deploy/vm.py --provision

vm-stop:  ## Stop and remove the machine that `make vm` started.
	$(SUDO) $(BIN)/python tests/deploy/vm.py --stop

clean:  ## Remove the virtualenv and local data (instance/, .env stay unless you delete them).
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
