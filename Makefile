# `make run`: set up and run the whole pipeline on the default data (Fashion-MNIST, cpu preset).
# `make test`: set up and run the test suite. `make setup` is idempotent.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: setup run test test-fast bench lock params image tools

setup: $(STAMP) /usr/share/datasets/fashion-mnist tools /usr/bin/chromium /usr/share/doc/opencv-doc/examples/data/tree.avi

$(STAMP): requirements.lock requirements-nodeps.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The default dataset ships as a Debian package (MIT licence); installed when we are root on Debian.
/usr/share/datasets/fashion-mnist:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }; \
	else echo "note: run 'sudo apt-get install dataset-fashion-mnist' for the default data"; fi

# The headless browser of tests/pipeline/test_offline_html.py (Debian chromium), installed when we are root on Debian.
/usr/bin/chromium:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -qq chromium >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: chromium could not be installed; tests/pipeline/test_offline_html.py will be skipped"; \
	else echo "note: run 'sudo apt-get install chromium' for the offline-rendering tests"; fi

# Real AVI clips for tests/unit/test_data_video.py (Debian opencv-doc), installed when we are root on Debian.
/usr/share/doc/opencv-doc/examples/data/tree.avi:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -qq opencv-doc >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq opencv-doc >/dev/null; } || \
	  echo "note: opencv-doc could not be installed; its AVI tests in tests/unit/test_data_video.py will be skipped"; \
	else echo "note: run 'sudo apt-get install opencv-doc' for the real-AVI tests"; fi

# Node packages (tools/package.json): the web libraries that `dvc plots show` (tools/dvc-plots.html,
# DVC's plots.html_template) and the validate stage's Data Docs use offline, and prism (the lakeFS API
# mock, for the tests). Without npm the prism tests are skipped and the validate stage cannot run.
tools: tools/node_modules/.package-lock.json tools/dvc-plots.html tools/emoji/node_modules/.package-lock.json
tools/node_modules/.package-lock.json: tools/package.json tools/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix tools --no-audit --no-fund --ignore-scripts; \
	else echo "note: npm not found; the lakeFS API tests (prism) will be skipped, the validate stage will fail"; fi
# A real colour image set (tools/emoji/package.json, pinned): the colour preset's data and its test.
tools/emoji/node_modules/.package-lock.json: tools/emoji/package.json tools/emoji/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix tools/emoji --no-audit --no-fund --ignore-scripts; \
	else echo "note: npm not found; the colour-data test will be skipped"; fi
tools/dvc-plots.html: tools/dvc_plots_template.py tools/node_modules/.package-lock.json
	python3 tools/dvc_plots_template.py --out $@

run: setup
	dvc repro

test: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -n auto --dist loadfile

# The fast lane: the tests not marked slow (no DVC pipeline, server or browser), in under 2 minutes.
test-fast: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -n auto --dist loadfile -m "not slow"

bench: setup
	$(PY) bench/train.py && $(PY) bench/train_variants.py && $(PY) bench/eval_cost.py && $(PY) bench/stage2.py && $(PY) bench/inception.py && $(PY) bench/frechet.py && $(PY) bench/decode.py && $(PY) bench/repro.py && $(PY) bench/precision_quality.py && $(PY) bench/scaling.py

# The GPU image (Dockerfile), with podman or docker.
image:
	$$(command -v podman || command -v docker) build -t ul:$$(git rev-parse --short HEAD) -t ul:latest .

# Re-compose params.yaml from conf/ (what `dvc exp run` does); e.g. make params OVERRIDES="preset=ci".
params: setup
	ul params $(OVERRIDES)

# Re-pin requirements.lock from requirements.in (needs the network to PyPI).
lock:
	python3 -m venv /tmp/ul-lock && /tmp/ul-lock/bin/pip install -q -r requirements.in && \
	{ echo "# Generated from requirements.in by 'make lock'. Install with plain pip."; \
	  /tmp/ul-lock/bin/pip freeze --exclude-editable; } > requirements.lock
	@echo "review requirements.lock: packages of requirements-nodeps.txt must not appear in it"
