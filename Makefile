# The commands a newcomer needs; each bootstraps what it uses (scripts/bootstrap.sh):
# `runtime` is the appliance runtime alone (no torch), `python` the whole lock, `peers`
# that plus the Debian packages of the integration and image tests. `make` alone lists them.
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONPATH := $(CURDIR)
# Holoscan (the MAP runtime) links libcudart.so.13 without declaring it. The appliance
# image registers the nvidia-cuda-runtime wheel's copy with ldconfig (Dockerfile); here the
# loader finds it through LD_LIBRARY_PATH, so that the demo, the service and the tests run
# on machines without a CUDA 13 toolkit. The path is fixed (requires-python is 3.11).
CUDART_WHEEL_LIB := $(CURDIR)/.venv/lib/python3.11/site-packages/nvidia/cu13/lib
export LD_LIBRARY_PATH := $(if $(LD_LIBRARY_PATH),$(LD_LIBRARY_PATH):)$(CUDART_WHEEL_LIB)
.DEFAULT_GOAL := help

.PHONY: help demo test check lint models data clean image

help: ## this list
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-11s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

demo: ## the main job on the bundled synthetic CT angiography study (runtime only, no torch)
	@scripts/bootstrap.sh runtime
	@$(PY) -m map_app.demo

test: ## lint, type-check and every test (unit and real-peer integration)
	@scripts/bootstrap.sh peers
	@$(MAKE) --no-print-directory lint
	@scripts/run_tests.sh

check: ## lint, type-check and the fast tests (not slow, no real peers or podman; PYTEST_ARGS=...)
	@$(MAKE) --no-print-directory lint
	@scripts/run_tests.sh -m "not slow and not peer" $(PYTEST_ARGS)

lint: ## ruff (lint and format check) and mypy
	@scripts/bootstrap.sh python
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .
	@.venv/bin/mypy

models: ## retrain, re-export and evaluate the shipped ensemble (about 2 hours on 2 cores)
	@scripts/bootstrap.sh python
	@$(PY) -m models.builder

data: ## write the train/val/test splits as NIfTI under var/data
	@scripts/bootstrap.sh runtime
	@$(PY) -m synthetic splits --out var/data

clean: ## remove var/ and output/ and the lint/test caches (keeps .venv and .tools)
	rm -rf var output .pytest_cache .mypy_cache .ruff_cache

.PHONY: compliance
compliance: ## IEC 62304 documents, traceability and verification report (Markdown + HTML) into var/compliance
	@scripts/bootstrap.sh python
	@mkdir -p var/compliance
	@# The verification report needs a real run: the whole suite, or JUNIT=file from CI.
	@if [[ -z "$(JUNIT)" ]]; then \
		scripts/run_tests.sh -p compliance.pytest_plugin \
			--junitxml=var/compliance/junit.xml $(PYTEST_ARGS) || true; fi
	@$(PY) -m compliance.gen render --out var/compliance --junit $(or $(JUNIT),var/compliance/junit.xml)

.PHONY: serve
serve: ## the appliance service, dev defaults: DICOM MINIVESS@127.0.0.1:11112, HTTP 127.0.0.1:3000 (no auth), state in var/
	@scripts/bootstrap.sh runtime
	@MINIVESS_DEV_MODE=$${MINIVESS_DEV_MODE:-true} $(PY) -m service serve

image: ## the appliance image (podman, offline build from the lock; python -m containers.build)
	@scripts/bootstrap.sh peers
	@$(PY) -m containers.build appliance

.PHONY: bundle
RELEASE_KEY ?= var/bundle/keys/dev-release.key
bundle: ## the signed offline bundle into var/bundle (RELEASE_KEY=..., RELEASE=N, COMPLIANCE=dir)
	@scripts/bootstrap.sh peers
	@if [[ ! -f "$(RELEASE_KEY)" ]]; then \
		if [[ "$(RELEASE_KEY)" != var/bundle/keys/dev-release.key ]]; then \
			echo "bundle: no release key at $(RELEASE_KEY)" >&2; exit 2; fi; \
		echo "bundle: no RELEASE_KEY: signing with a new DEVELOPMENT key in var/bundle/keys/" \
			"(never pin it at a site)" >&2; \
		$(PY) -m bundle keygen --private-key $(RELEASE_KEY) \
			--public-key var/bundle/keys/dev-release.pub; fi
	@$(PY) -m bundle build --signing-key $(RELEASE_KEY) $(if $(RELEASE),--release $(RELEASE)) \
		$(if $(COMPLIANCE),--compliance $(COMPLIANCE))
