# The two set-up commands are `make demo` and `make test`; everything else here serves them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test demo lint deps sysdeps testbed pytest clean conformance manifests image

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $@

deps: $(VENV)/.installed

# iproute2 builds the test network; debootstrap the container image's root filesystem; skopeo checks the
# image with a second, independent reader; Debian's chromium tests the dashboard in a real browser; Go builds
# kube-apiserver and etcd from the module proxy.
sysdeps:
	@command -v ip >/dev/null || { echo "installing iproute2"; $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq iproute2; }
	@command -v debootstrap >/dev/null && command -v skopeo >/dev/null || { echo "installing debootstrap and skopeo"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq debootstrap skopeo; }
	@command -v chromium >/dev/null || { echo "installing chromium"; $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }
	@command -v go >/dev/null || { echo "the Go toolchain (>= 1.26) is required to build the test bed: https://go.dev/doc/install" >&2; exit 1; }

# kube-apiserver, etcd, helm and the upstream CRDs, cached in ~/.cache/mcgw keyed by version.
testbed: deps sysdeps
	$(PY) -m tests.e2e.testbed

lint: deps
	$(PY) -m ruff check mcgw xdsserver tests benchmarks hack
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

# pytest exits 5 when it collects nothing; say so instead of failing CI on an empty selection.
pytest: deps
	@set +e; $(PY) -m pytest -ra $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

# The conformance suite runs the claimed tests too; its report goes to the (uncommitted) log directory,
# `make conformance` writes the official one under conformance/reports/.
test: testbed image lint pytest
	$(MAKE) --no-print-directory conformance CONFORMANCE_REPORT=conformance/logs/make-test-report.yaml

demo: deps
	$(PY) -m mcgw demo

# The upstream Gateway API conformance suite against mcgw on a 3-cluster test bed (conformance/README.md).
# Options come from CONFORMANCE_* variables, e.g. `make conformance CONFORMANCE_RUN_TEST=HTTPRouteSimpleSameNamespace`.
conformance: deps sysdeps
	$(PY) -m tests.conformance

# Rewrite deploy/rbac/mcgw.yaml and deploy/mcgw/mcgw.yaml from charts/mcgw (tests/chart fails until they match).
manifests: deps
	$(PY) -m tests.chart --update

# The controller image from the Dockerfile, without a Docker engine (hack/image/, root for its chroots):
# build/image/oci (an OCI image layout) and build/image/mcgw.tar (for `docker load`); steps cached in
# ~/.cache/mcgw/image/. docs/install.md says how to push it.
image: deps sysdeps
	$(SUDO) $(PY) -m hack.image

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
