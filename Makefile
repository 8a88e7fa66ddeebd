# dxtalent — two commands on a fresh machine: `make demo` and `make test`.
# Everything installs itself: a pinned uv in .tools/, then the locked environment in .venv/.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := src/dxtalent contracts/src/dxtalent_contracts infra/src/dxtalent_infra \
            services/enrollment/src/dxtalent_enrollment \
            services/certification/src/dxtalent_certification \
            services/reporting/src/dxtalent_reporting
EXAMPLES := examples/subscriber
PYTEST_ARGS ?=

.PHONY: test lint typecheck pytest unit integration e2e demo schemas bench-infra bench-e2e clean chromium screenshots bench-dashboard bench-rebuild

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml */pyproject.toml services/*/pyproject.toml
	UV_PYTHON=$(PYTHON) $(UV) sync --locked --quiet
	touch $@

test: lint typecheck chromium pytest ## ruff, mypy --strict, then the whole pytest suite

lint: $(VENV)/.synced
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.synced
	$(BIN)/mypy $(PACKAGES) $(EXAMPLES) tests

pytest: $(VENV)/.synced chromium
	$(BIN)/pytest $(PYTEST_ARGS)

unit: $(VENV)/.synced
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

integration: $(VENV)/.synced
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

e2e: $(VENV)/.synced
	$(BIN)/pytest -m e2e $(PYTEST_ARGS)

schemas: $(VENV)/.synced ## regenerate contracts/schemas from the pydantic models
	$(BIN)/python -m dxtalent_contracts.schemagen contracts/schemas

coverage: $(VENV)/.synced ## branch coverage of the pure domain core
	$(BIN)/pytest -m unit --cov=dxtalent_certification.domain --cov=dxtalent_reporting.domain \
	  --cov=dxtalent_contracts --cov-branch --cov-report=term-missing

demo: $(VENV)/.synced ## run the whole system on embedded servers and show the result
	$(BIN)/dxtalent demo $(DEMO_ARGS)

bench-infra: $(VENV)/.synced ## event store / relay / consumer rates (prints figures)
	$(BIN)/python -m dxtalent_infra.bench

bench-e2e: $(VENV)/.synced ## CourseCompleted -> LevelCertified latency (prints figures)
	$(BIN)/dxtalent bench latency

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache

chromium: ## Debian's Chromium for the browser tests and screenshots (Playwright's download is unreachable)
	@command -v chromium >/dev/null || command -v /usr/bin/chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk) \
	      || echo "chromium could not be installed: the browser tests will be skipped"; \
	  else echo "chromium is missing and cannot be installed here (needs root and apt-get): the browser tests will be skipped"; fi; }

screenshots: $(VENV)/.synced chromium ## every dashboard page at 1366×768 with the demo city, into docs/screenshots/
	$(BIN)/python -m dxtalent.screenshots $(SCREENSHOTS_URL)

bench-dashboard: $(VENV)/.synced ## time each dashboard page: demo city and a 30,000-staff city (median/p99)
	$(BIN)/dxtalent bench dashboard

bench-rebuild: $(VENV)/.synced ## dxtalent rebuild rates (events/s): demo city and a 30,000-staff city
	$(BIN)/dxtalent bench rebuild
