# The two set-up commands are `make run` and `make test`; everything else is optional.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
CHECKOV_VENV ?= .venv-checkov
BENCH_VENV ?= .venv-bench
TF_DIR ?= terraform
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
PORT ?= 8080
SUB ?= local-developer
PERMS ?= admin

.PHONY: help run serve train token test lint typecheck unit packages infra tf-fmt checkov cloudbuild check-infra lock clean bench-deps

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

REQUIRE_PY311 := $(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "Python 3.11 is required (found %d.%d); set PYTHON=" % sys.version_info[:2])'

$(VENV)/.runtime: requirements.txt
	@$(REQUIRE_PY311) >&2
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) >&2
	@echo "Installing runtime dependencies into $(VENV) (hash-checked)..." >&2
	@$(PIP) install -q --require-hashes -r requirements.txt >&2
	@touch $@

# The project itself, editable: scripts and tests import `common` and `tools` from the
# checkout, and .venv/bin/ipoctl is the command-line client. No build isolation, so
# nothing is fetched to build it (requirements-build.txt says why it needs `wheel`).
$(VENV)/.installed: $(VENV)/.runtime requirements-build.txt pyproject.toml
	@echo "Installing the project into $(VENV) (editable)..." >&2
	@$(PIP) install -q --require-hashes -r requirements-build.txt >&2
	@$(PIP) install -q --no-deps --no-build-isolation -e . >&2
	@touch $@

$(VENV)/.dev: $(VENV)/.installed requirements-dev.txt requirements-kserve.txt
	@echo "Installing test dependencies into $(VENV) (hash-checked)..." >&2
	@$(PIP) install -q --require-hashes -r requirements.txt -r requirements-dev.txt >&2
	@$(PIP) install -q --no-deps --require-hashes -r requirements-kserve.txt >&2
	@touch $@

run: $(VENV)/.installed  ## Train and register the demo models if absent, then serve every function.
	@$(PY) scripts/train_models.py --if-absent
	@$(PY) scripts/serve.py --port $(PORT)

serve: $(VENV)/.installed  ## Serve every function (no training).
	@$(PY) scripts/serve.py --port $(PORT)

train: $(VENV)/.installed  ## Train, register and promote a new version of the demo models.
	@$(PY) scripts/train_models.py

token: $(VENV)/.installed  ## Print a signed development token (SUB=, PERMS=a,b).
	@$(PY) scripts/issue_token.py --sub "$(SUB)" --perms "$(PERMS)"

lint: $(VENV)/.dev  ## ruff lint and format check; bandit (nothing above low severity).
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/bandit -q -r common functions tools scripts --severity-level medium

typecheck: $(VENV)/.dev  ## mypy (strict) on common/, tools/, functions/ and scripts/.
	$(VENV)/bin/mypy

unit: $(VENV)/.dev packages  ## The pytest suite only.
	$(PY) -m pytest

# Debian packages the tests use. redis-server: tests start their own on a free port, and
# the packaged service is stopped at once so nothing comes to depend on a server on 6379.
# chromium: the compliance report's browser test drives it through Playwright (never a
# browser download). As root the missing ones are installed in one apt-get run; otherwise
# the tests that need them skip, saying how to install them.
TEST_PACKAGES := redis-server chromium

packages:  ## Install redis-server and chromium for the tests if missing (root only; otherwise their tests skip).
	@missing=; \
	for package in $(TEST_PACKAGES); do \
		command -v $$package >/dev/null 2>&1 || missing="$$missing $$package"; \
	done; \
	if [ -z "$$missing" ]; then \
		:; \
	elif [ "$$(id -u)" -eq 0 ]; then \
		echo "Installing$$missing (apt-get)..." >&2; \
		if apt-get update -qq </dev/null >&2 && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing </dev/null >&2; then \
			case "$$missing" in *redis-server*) \
				{ invoke-rc.d redis-server stop || service redis-server stop; } </dev/null >/dev/null 2>&1 || true;; \
			esac; \
		else \
			echo "apt-get could not install$$missing; the tests that need it will skip" >&2; \
		fi; \
	else \
		echo "not installed:$$missing: run \`apt-get install$$missing\` (make test does this when run as root); the tests that need it will skip" >&2; \
	fi

# checkov has a virtual environment of its own: it ships a top-level `hcl2` package that
# would shadow python-hcl2's, which the tests use to read terraform/*.tf.
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	@$(REQUIRE_PY311) >&2
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV) >&2
	@echo "Installing checkov into $(CHECKOV_VENV) (hash-checked)..." >&2
	@$(CHECKOV_VENV)/bin/python -m pip --disable-pip-version-check install -q --require-hashes -r requirements-checkov.txt >&2
	@touch $@

# The benchmark's reference server (MLServer, for `scripts/bench.py http --against mlserver`)
# and py-spy have a virtual environment of their own: MLServer needs protobuf < 7 and
# brings FastAPI, gevent and pandas, none of which the runtime or the tests use.
$(BENCH_VENV)/.installed: requirements-bench.txt
	@$(REQUIRE_PY311) >&2
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV) >&2
	@echo "Installing MLServer and py-spy into $(BENCH_VENV) (hash-checked)..." >&2
	@$(BENCH_VENV)/bin/python -m pip --disable-pip-version-check install -q --require-hashes -r requirements-bench.txt >&2
	@touch $@

bench-deps: $(BENCH_VENV)/.installed  ## MLServer and py-spy for the benchmark, in .venv-bench.

TF_HINT := make tf-fmt: terraform is not on PATH; the format check of $(TF_DIR)/ needs Terraform >= 1.5

# CHECKPOINT_DISABLE stops Terraform's own online version check.
tf-fmt:  ## terraform fmt check of terraform/ (needs Terraform >= 1.5 on PATH; runs offline).
	@command -v terraform >/dev/null 2>&1 || { echo '$(TF_HINT)' >&2; exit 1; }
	@v=$$(CHECKPOINT_DISABLE=1 terraform version 2>/dev/null | sed -nE '1s/^Terraform v([0-9]+\.[0-9]+).*/\1/p'); \
	case "$$v" in 0.*|1.[0-4]) echo "make tf-fmt: found Terraform $$v; the format check of $(TF_DIR)/ needs Terraform >= 1.5" >&2; exit 1;; esac
	CHECKPOINT_DISABLE=1 terraform fmt -check -recursive -diff $(TF_DIR)

# Offline: --skip-download and BC_SKIP_MAPPING stop the call to the Prisma Cloud API for
# guideline links (made on every run otherwise), CKV_SKIP_PACKAGE_UPDATE_CHECK stops the
# query to PyPI for a newer checkov, and external modules are never downloaded.
CHECKOV_ENV := BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=TRUE

checkov: $(CHECKOV_VENV)/.installed  ## checkov static analysis of terraform/ (offline, in its own venv).
	$(CHECKOV_ENV) $(CHECKOV_VENV)/bin/checkov -d $(TF_DIR) --framework terraform --quiet --compact \
		--skip-download --download-external-modules false

# Every step of cloudbuild.yaml against what its image has (scripts/cloudbuild_images.json).
cloudbuild: $(VENV)/.installed  ## Check that each Cloud Build step uses only tools its image has.
	$(PY) scripts/check_cloudbuild.py

# scripts/check_infra.py reads terraform/*.tf with python-hcl2, a test dependency.
check-infra: $(VENV)/.dev  ## Check that Terraform, openapi.yaml and functions/ name the same things.
	$(PY) scripts/check_infra.py

infra: tf-fmt checkov cloudbuild  ## Infrastructure checks: terraform fmt and checkov on terraform/, cloudbuild.yaml's images.

test: lint typecheck infra unit  ## Everything CI runs: lint, types, infrastructure checks, the whole suite.

# The lock files name no index and no wheel folder, so they install the same anywhere:
# pip's configuration files and PIP_FIND_LINKS are ignored while resolving (a local wheel
# folder would otherwise be hashed in and written into the files), and neither option is
# written out.
PIP_COMPILE := env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $(VENV)/bin/pip-compile -q \
	--generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links

lock:  ## Re-resolve requirements*.in into hash-pinned requirements*.txt.
	$(PIP) install -q pip-tools==7.6.2
	$(PIP_COMPILE) -o requirements.txt requirements.in
	$(PIP_COMPILE) -o requirements-dev.txt requirements-dev.in
	$(PIP_COMPILE) -o requirements-checkov.txt requirements-checkov.in
	$(PIP_COMPILE) -o requirements-build.txt requirements-build.in
	$(PIP_COMPILE) -o requirements-bench.txt requirements-bench.in

clean:  ## Remove the virtual environments, local state and caches.
	rm -rf $(VENV) $(CHECKOV_VENV) $(BENCH_VENV) .data .pytest_cache .mypy_cache .ruff_cache dist build *.egg-info
