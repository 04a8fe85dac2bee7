# Two commands do everything on a fresh machine: `make demo` and `make test`. Both create the virtualenvs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export YOLO_OFFLINE := 1
export YOLO_CONFIG_DIR := $(CURDIR)/build/ultralytics
export PYTHONPATH := $(CURDIR)

.PHONY: help install web up down demo lint format test test-unit bench train export evaluate config-table lock sweep clean
.DEFAULT_GOAL := help

help:  ## list the targets
	@awk -F ':.*## ' '/^[a-z-]+:.*## / {printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: requirements.txt functions/upload/requirements.txt functions/infer/requirements.txt functions/status/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

.venv-tasks/.installed: requirements-tasks-emulator.txt
	$(PYTHON) -m venv .venv-tasks
	.venv-tasks/bin/pip install -q --disable-pip-version-check -r requirements-tasks-emulator.txt
	touch $@

# Node.js: the Firebase Auth emulator (firebase-tools, ./package-lock.json) and the web client (web/package-lock.json).
node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 20+ and npm (Debian: apt-get install nodejs npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

web/node_modules/.installed: web/package.json web/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 20+ and npm (Debian: apt-get install nodejs npm)"; exit 1; }
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed .venv-tasks/.installed node_modules/.installed web/node_modules/.installed  ## create the virtualenvs and install the npm packages (Auth emulator, web client) from their lockfiles

web: web/node_modules/.installed  ## bundle the web client (web/dist/app.js) with esbuild
	cd web && npm run --silent build

up: install  ## start the local stack (emulators, the functions, the web client) on 127.0.0.1
	$(PY) -m devstack.stack up

sweep: install  ## end as failed every job of the local stack that no delivery will finish (once; make up first)
	$(PY) -m devstack.sweep

down:  ## stop exactly what `make up` started
	@if [ -x $(PY) ]; then $(PY) -m devstack.stack down; fi

demo: install  ## stack up, analyse IMAGE (or a generated sample), print the result, stop what it started
	$(PY) scripts/demo.py $(if $(IMAGE),--image "$(IMAGE)")

lint: install  ## ruff check, ruff format --check and mypy (configured in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install  ## ruff format and ruff's safe fixes, in place
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint  ## lint, then every test; starts the emulators it needs
	$(PY) -m pytest

test-unit: install  ## the unit tests only (use cases on in-memory fakes; no emulator, under 30 s)
	$(PY) -m pytest tests/unit

bench: install  ## speed and memory targets, written to bench/report.json
	$(PY) scripts/bench.py --out bench/report.json

PRETRAINED ?= wheel
DEVICE ?= cpu
train: install  ## fine-tune the reference, train the students, distil them from it (about 4 h on 2 CPU cores; run again, it goes on where it stopped); PRETRAINED=official|FOLDER, DEVICE=0
	$(PY) -m models.data
	$(PY) -m models.pretrained "$(PRETRAINED)"
	PRETRAINED=$(PRETRAINED) DEVICE=$(DEVICE) $(PY) -m models.reference
	PRETRAINED=$(if $(filter wheel,$(PRETRAINED)),scratch,$(PRETRAINED)) $(PY) -m models.train $(if $(DATA),--data "$(DATA)")
	$(PY) -m models.gate
	$(PY) -m models.export_reference
	$(PY) -m models.distil --model diagnosis $(DIAGNOSIS_DISTILLATION)
	$(PY) -m models.distil --model binary

# How the served diagnosis model was distilled (the model card lists every recipe tried and its fit-set figures).
DIAGNOSIS_DISTILLATION := --from-scratch --plain-crops --fresh-views --views 24 --mild-views --correct-teacher --alpha 0.5 --epochs 36

export: install  ## ONNX export of the students, the gate and reference, test-time views study, calibration, assessment weights, models/manifest.json
	$(PY) -m models.data
	$(PY) -m models.export --onnx-only $(if $(DATA),--data "$(DATA)")
	$(PY) -m models.gate
	$(PY) -m models.export_reference
	$(PY) -m models.views
	$(PY) -m models.fit

evaluate: install  ## metrics.json, MODEL_CARD.md, EXPERIMENTS.md and training.png on held-out lesions, Derm7pt and PAD-UFES-20
	$(PY) -m models.data
	$(PY) -m models.evaluate

LOCK_PYTHON ?= python3.12
lock:  ## functions/infer/requirements.lock: the infer image's packages pinned with their PyPI hashes (pip-compile, Python 3.12)
	$(LOCK_PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/pip install -q pip-tools==7.6.2
	cd functions/infer && env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null ../../build/lock-venv/bin/pip-compile -q \
	  --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
	  --output-file requirements.lock requirements.txt

config-table:  ## the README's configuration table
	@$(PYTHON) -m shared.config

clean: down  ## stop the stack, remove .stack/ and build/
	rm -rf .stack build
