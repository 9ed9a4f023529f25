# The two set-up commands are `make run` and `make test`; everything else is optional.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
PORT ?= 8080
SUB ?= local-developer
PERMS ?= admin

.PHONY: help run serve train token test lint typecheck unit redis lock clean

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

$(VENV)/.runtime: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "Python 3.11 is required (found %d.%d); set PYTHON=" % sys.version_info[:2])' >&2
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) >&2
	@echo "Installing runtime dependencies into $(VENV) (hash-checked)..." >&2
	@$(PIP) install -q --require-hashes -r requirements.txt >&2
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	@echo "Installing test dependencies into $(VENV) (hash-checked)..." >&2
	@$(PIP) install -q --require-hashes -r requirements.txt -r requirements-dev.txt >&2
	@touch $@

run: $(VENV)/.runtime  ## Train and register the demo models if absent, then serve every function.
	@$(PY) scripts/train_models.py --if-absent
	@$(PY) scripts/serve.py --port $(PORT)

serve: $(VENV)/.runtime  ## Serve every function (no training).
	@$(PY) scripts/serve.py --port $(PORT)

train: $(VENV)/.runtime  ## Train, register and promote a new version of the demo models.
	@$(PY) scripts/train_models.py

token: $(VENV)/.runtime  ## Print a signed development token (SUB=, PERMS=a,b).
	@$(PY) scripts/issue_token.py --sub "$(SUB)" --perms "$(PERMS)"

lint: $(VENV)/.dev  ## ruff lint and format check; bandit (nothing above low severity).
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/bandit -q -r common functions --severity-level medium

typecheck: $(VENV)/.dev  ## mypy (strict) on common/.
	$(VENV)/bin/mypy

unit: $(VENV)/.dev redis  ## The pytest suite only.
	$(PY) -m pytest

# Tests start their own redis-server on a free port; the packaged service is stopped
# at once so nothing comes to depend on a server on 6379.
REDIS_HINT := redis-server is not installed: run `apt-get install redis-server` (make test does this when run as root); its tests will skip

redis:  ## Install redis-server for the tests if missing (root only; otherwise they skip).
	@if command -v redis-server >/dev/null 2>&1; then \
		:; \
	elif [ "$$(id -u)" -eq 0 ]; then \
		echo "Installing redis-server (apt-get)..." >&2; \
		if apt-get update -qq </dev/null >&2 && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server </dev/null >&2; then \
			{ invoke-rc.d redis-server stop || service redis-server stop; } </dev/null >/dev/null 2>&1 || true; \
		else \
			echo 'apt-get could not install redis-server; its tests will skip' >&2; \
		fi; \
	else \
		echo '$(REDIS_HINT)' >&2; \
	fi

test: lint typecheck unit  ## Everything CI runs: lint, types, the whole suite.

lock:  ## Re-resolve requirements*.in into hash-pinned requirements*.txt.
	$(PIP) install -q pip-tools==7.6.2
	PIP_CONFIG_FILE=/dev/null $(VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url -o requirements.txt requirements.in
	PIP_CONFIG_FILE=/dev/null $(VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url -o requirements-dev.txt requirements-dev.in

clean:  ## Remove the virtual environment, local state and caches.
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache dist
