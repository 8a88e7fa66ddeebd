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
# Tests run in three pytest-xdist workers (each with its own servers when it needs embedded ones):
# most of a test's time is waiting for processes and servers, so on two cores a third worker
# fills the waits (two left 40 % of the CPU idle). PYTEST_WORKERS=0 runs them in one.
PYTEST_WORKERS ?= 3
XDIST = -n $(PYTEST_WORKERS) --dist worksteal

.PHONY: test lint typecheck pytest unit integration e2e demo schemas bench-infra bench-nats-sync bench-e2e bench-latency bench-throughput clean chromium promtool screenshots bench-dashboard bench-queries bench-rebuild compose-smoke k8s-pin-images k8s-render

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml */pyproject.toml services/*/pyproject.toml
	UV_PYTHON=$(PYTHON) $(UV) sync --locked --quiet
	touch $@

test: lint typecheck chromium promtool pytest ## ruff, mypy --strict, then the whole pytest suite

lint: $(VENV)/.synced
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.synced
	$(BIN)/mypy $(PACKAGES) $(EXAMPLES) tests

pytest: $(VENV)/.synced chromium promtool
	$(BIN)/pytest $(XDIST) $(PYTEST_ARGS)

unit: $(VENV)/.synced
	$(BIN)/pytest -m unit $(XDIST) $(PYTEST_ARGS)

integration: $(VENV)/.synced
	$(BIN)/pytest -m integration $(XDIST) $(PYTEST_ARGS)

e2e: $(VENV)/.synced
	$(BIN)/pytest -m e2e $(XDIST) $(PYTEST_ARGS)

schemas: $(VENV)/.synced ## regenerate contracts/schemas from the pydantic models
	$(BIN)/python -m dxtalent_contracts.schemagen contracts/schemas

coverage: $(VENV)/.synced ## branch coverage of the pure domain core
	$(BIN)/pytest -m unit --cov=dxtalent_certification.domain --cov=dxtalent_reporting.domain \
	  --cov=dxtalent_contracts --cov-branch --cov-report=term-missing

demo: $(VENV)/.synced ## run the whole system on embedded servers and show the result
	$(BIN)/dxtalent demo $(DEMO_ARGS)

bench-infra: $(VENV)/.synced ## event store / relay / consumer rates (prints figures)
	$(BIN)/python -m dxtalent_infra.bench

bench-nats-sync: $(VENV)/.synced ## JetStream publish rate with and without sync_interval: always (prints figures)
	$(BIN)/python -m dxtalent_infra.bench_sync

bench-e2e: $(VENV)/.synced ## CourseCompleted -> LevelCertified latency (prints figures)
	$(BIN)/dxtalent bench latency

PODMAN_COMPOSE_VERSION := 1.6.0
PODMAN_COMPOSE := .tools/podman-compose/bin/podman-compose

$(PODMAN_COMPOSE): # its own venv: an operator's tool, not a dependency of the product
	$(PYTHON) -m venv .tools/podman-compose
	.tools/podman-compose/bin/pip install --quiet --disable-pip-version-check podman-compose==$(PODMAN_COMPOSE_VERSION)

compose-smoke: $(VENV)/.synced $(PODMAN_COMPOSE) ## build the image, run the compose stack on podman, publish, SIGTERM, check (not in `make test`)
	PODMAN_COMPOSE=$(CURDIR)/$(PODMAN_COMPOSE) $(BIN)/python tests/smoke/compose_smoke.py $(SMOKE_ARGS)

k8s-render: ## the Kubernetes manifests as `kubectl apply -k deploy/k8s` would apply them
	kubectl kustomize deploy/k8s

k8s-pin-images: $(VENV)/.synced ## after pushing: pin every image of deploy/k8s by digest (IMAGES="name=ref ...")
	$(BIN)/python deploy/k8s/pin_images.py $(IMAGES)

bench-latency: $(VENV)/.synced ## CourseCompleted -> LevelCertified p50/p90/p99 and backlog at 1,000 and 2,000 facts/s, 3 runs each
	$(BIN)/dxtalent bench latency --rate 1000 --runs 3
	$(BIN)/dxtalent bench latency --rate 2000 --runs 3

bench-throughput: $(VENV)/.synced ## 30,000-staff city end to end vs. a bare stage, 3 runs (prints figures)
	$(BIN)/dxtalent bench throughput --runs 3 $(BENCH_ARGS)

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache

chromium: ## Debian's Chromium for the browser tests and screenshots (Playwright's download is unreachable)
	@command -v chromium >/dev/null || command -v /usr/bin/chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk) \
	      || echo "chromium could not be installed: the browser tests will be skipped"; \
	  else echo "chromium is missing and cannot be installed here (needs root and apt-get): the browser tests will be skipped"; fi; }

promtool: ## Debian's promtool for the alert-rule tests (only the binary is used; no Prometheus server is started)
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
	      && { ! command -v systemctl >/dev/null || systemctl disable --now prometheus >/dev/null 2>&1 || true; }) \
	      || echo "promtool could not be installed: the alert-rule tests will be skipped"; \
	  else echo "promtool is missing and cannot be installed here (needs root and apt-get): the alert-rule tests will be skipped"; fi; }

screenshots: $(VENV)/.synced chromium ## every dashboard page at 1366×768 with the demo city, into docs/screenshots/
	$(BIN)/python -m dxtalent.screenshots $(SCREENSHOTS_URL)

bench-queries: $(VENV)/.synced ## requests/s and p50/p99 of the report queries: demo city and 30,000 staff
	$(BIN)/dxtalent bench queries

bench-dashboard: $(VENV)/.synced ## time each dashboard page: demo city and a 30,000-staff city (median/p99)
	$(BIN)/dxtalent bench dashboard

bench-rebuild: $(VENV)/.synced ## dxtalent rebuild rates (events/s): demo city and a 30,000-staff city
	$(BIN)/dxtalent bench rebuild
