# Build, test and tooling entry points.  See README.md, "Setup and tests".

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
WASM_DIR := tools/wasm
PYTEST_ARGS ?=
BENCH_ARGS ?=

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# Debian packages wanted by the simulator and tests: command -> package
# (openssl: the MQTT tests make a CA and a broker certificate for TLS).
APT_NEEDS := mosquitto:mosquitto socat:socat openssl:openssl node:nodejs npm:npm

# micropython-lib's umqtt.simple, the firmware's MQTT client: both versions
# boards have (1.7.0 frozen into ESP32 firmware 1.28, 1.8.0 from `mip`),
# copied unmodified into build/umqtt-<version>/umqtt/simple.py for the host
# tests and the simulator. UMQTT_SRC: a folder with umqtt.simple-<version>/
# (as ../shared/vendor/micropython-lib) or a micropython-lib checkout.
UMQTT_SRC ?=
UMQTT_DEFAULT_SRC := ../shared/vendor/micropython-lib
UMQTT_VERSIONS := 1.7.0 1.8.0

PY_STAMP := $(VENV)/.requirements.stamp
NODE_STAMP := $(WASM_DIR)/node_modules/.npm-ci.stamp

.PHONY: setup system-packages umqtt test sim bench bench-baseline deploy clean distclean

setup: system-packages $(PY_STAMP) $(NODE_STAMP) umqtt

# Copies only what changed; a version it cannot find is reported (the MQTT
# tests then fail naming it), the rest of the setup still stands.
umqtt:
	@src="$(UMQTT_SRC)"; [ -n "$$src" ] || src="$(UMQTT_DEFAULT_SRC)"; \
	missing=""; \
	for v in $(UMQTT_VERSIONS); do \
	  f="$$src/umqtt.simple-$$v/umqtt/simple.py"; \
	  if [ ! -f "$$f" ]; then \
	    f="$$src/micropython/umqtt.simple/umqtt/simple.py"; \
	    grep -qs "version=\"$$v\"" "$$src/micropython/umqtt.simple/manifest.py" || f=""; \
	  fi; \
	  out="build/umqtt-$$v/umqtt/simple.py"; \
	  if [ -z "$$f" ] && [ -z "$(UMQTT_SRC)" ] && [ ! -f "$$out" ] && [ -x $(VENV)/bin/micropython ]; then \
	    echo "umqtt.simple $$v: not under $$src; trying the unix port's mip (needs the internet)"; \
	    $(VENV)/bin/micropython -c "import mip; mip.install('umqtt.simple', version='$$v', target='build/umqtt-$$v', mpy=False)" \
	      >/dev/null 2>&1 && [ -f "$$out" ] && f="$$out"; \
	  fi; \
	  if [ -z "$$f" ]; then missing="$$missing $$v"; \
	  elif [ "$$f" != "$$out" ] && ! cmp -s "$$f" "$$out"; then \
	    mkdir -p "$$(dirname "$$out")"; cp "$$f" "$$out"; echo "umqtt.simple $$v: $$f -> $$out"; \
	  fi; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make setup: umqtt.simple$$missing not found under $$src (nor fetched by mip)." >&2; \
	  echo "  The MQTT tests and tools/sim.py --broker need micropython-lib's umqtt.simple" >&2; \
	  echo "  $(UMQTT_VERSIONS) (they are not on PyPI). Point UMQTT_SRC at a folder holding" >&2; \
	  echo "  umqtt.simple-<version>/umqtt/simple.py, or at a micropython-lib checkout at that version" >&2; \
	  echo "  (the micropython/micropython-lib repository; 1.7.0: commit 8380c7bb," >&2; \
	  echo "  1.8.0: ee4bb8ff), then: make setup UMQTT_SRC=DIR" >&2; \
	fi

# Installs only what is missing, so a repeated `make setup` touches nothing.
system-packages:
	@missing=""; \
	for pair in $(APT_NEEDS); do \
	  cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v "$$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$$cmd" ] \
	    || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
	  elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
	  else echo "make setup: need root (or sudo) to install:$$missing" >&2; exit 1; fi; \
	  echo "Installing Debian packages:$$missing"; \
	  $$sudo apt-get update -qq; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(VPY):
	$(PYTHON) -m venv $(VENV)

# This machine's pip configuration names optional local indexes; pip warns
# about each one that lacks a package, which is noise here.
$(PY_STAMP): requirements.txt | $(VPY)
	$(VPY) -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 \
	  | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	@touch $@

# npm ci recreates node_modules from package-lock.json (pinned versions).
# `--loglevel=error` also hides npm's warning about the machine's `nodedir`.
$(NODE_STAMP): $(WASM_DIR)/package.json $(WASM_DIR)/package-lock.json
	cd $(WASM_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

test:
	$(VPY) -m pytest host_tests -q $(PYTEST_ARGS)

# The demo scenario in real time with a live terminal view (about 90 s).
sim: setup
	$(VPY) tools/sim.py --scenario scenarios/demo.json --realtime --live --trace traces/demo.jsonl

# Measure, write bench/results.json and bench/results.md, compare with
# bench/baseline.json (about a minute). A regression is flagged; the exit
# status is 1 for it only with BENCH_STRICT=1. See README, "Benchmarks".
bench: setup
	$(VPY) bench/bench.py $(BENCH_ARGS)

# Accept the current figures as the new baseline (commit bench/baseline.json).
bench-baseline: setup
	$(VPY) bench/bench.py --save-baseline $(BENCH_ARGS)

# Compile, copy and configure a board: make deploy BOARD=pico-w PORT=/dev/ttyACM0
# [CONFIG=charger.json] [DEPLOY_ARGS=--dry-run]. See README, "Boards and deploy".
deploy: $(PY_STAMP)
	@if [ -z "$(BOARD)" ] || [ -z "$(PORT)" ]; then \
	  echo "make deploy: give BOARD=<profile in boards/> and PORT=<serial port>" >&2; exit 2; fi
	$(VPY) tools/deploy.py --board "$(BOARD)" --port "$(PORT)" \
	  $(if $(CONFIG),--config "$(CONFIG)") $(DEPLOY_ARGS)

# Build outputs and caches; `distclean` also drops .venv and node_modules.
clean:
	rm -rf build .pytest_cache .hypothesis
	find . -path ./.git -prune -o -path ./$(VENV) -prune -o -path ./$(WASM_DIR)/node_modules -prune -o \
	  \( -name __pycache__ -type d -prune -exec rm -rf {} + \) -o \
	  \( \( -name '*.pyc' -o -name '*.mpy' \) -type f -exec rm -f {} + \)

distclean: clean
	rm -rf $(VENV) $(WASM_DIR)/node_modules
