# NUC RK core service — developer entry points (GNU make).
#
#   make run     install deps, build, create a dev home in .dev-home/ (once) and serve
#   make test    install deps, build the `nuc` binary, run the end-to-end and unit tests
#   make bench   run the benchmarks
#   make lint    clippy (warnings are errors) and rustfmt --check
#
# Every target that needs system packages or pkilint goes through `deps`, which is idempotent:
# it checks for what is actually installed and does nothing (quickly) when all is there.

SHELL := /bin/bash
.DEFAULT_GOAL := build

# Debian packages needed to build (openssl-sys, pcsc) and to test (SoftHSM2, pkcs11-tool,
# pcscd + the virtual reader vpcd). python3-venv is needed to create .venv/ for pkilint.
# postgresql: the shared store of several instances; the tests start throwaway clusters of
# their own (initdb + pg_ctl in a temporary directory), never the system's one.
# postgresql-client: pg_dump and pg_restore, which `nuc backup` / `nuc restore` run for a home on
# PostgreSQL (tests/backup.rs).
DEB_PACKAGES := openssl pkg-config libssl-dev libpcsclite-dev softhsm2 opensc pcscd vsmartcard-vpcd \
                python3 python3-venv postgresql postgresql-client jq curl poppler-utils

# Debian packages to build and check the Debian package of the service (`make deb`, and
# tests/deb.rs): lintian, help2man (the man pages, from --help), dpkg-dev (dpkg-shlibdeps),
# binutils (strip), systemd (systemd-analyze verify only: the tests never start systemd),
# adduser (the package's postinst).
DEB_PACKAGING_PACKAGES := lintian help2man dpkg-dev binutils systemd adduser

# The headless browser of tests/console_browser.rs (the console page run for real, driven over
# WebDriver by chromedriver); fonts-dejavu-core so the Kazakh letters render in its screenshots.
DEB_BROWSER_PACKAGES := chromium chromium-driver fonts-dejavu-core

# apt-get runs through sudo only when we are not root (CI runs as root, without sudo).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# Project-local Python virtualenv holding pkilint (lint_pkix_cert, lint_crl, lint_ocsp_response).
PYTHON ?= python3
VENV := $(CURDIR)/.venv
# pip requirement for pkilint; pin it here if a new release changes findings (e.g. pkilint==0.13.3).
PKILINT ?= pkilint

# Where cargo puts its output: target/ unless CARGO_TARGET_DIR says otherwise.
TARGET_DIR := $(abspath $(or $(CARGO_TARGET_DIR),target))
NUC := $(TARGET_DIR)/release/nuc

# Home directory of the local development instance (config, SoftHSM2 token, SQLite db).
DEV_HOME := .dev-home

# Extra arguments for the benchmark binary, e.g. `make bench BENCH_ARGS="--help"`.
BENCH_ARGS ?=

.PHONY: deps deps-deb deps-deb-packaging deps-deb-browser deps-python deps-promtool deps-nginx build run test bench lint clean-dev deb

# Install everything build and tests need (Debian packages, then pkilint in .venv/).
deps: deps-deb deps-deb-packaging deps-deb-browser deps-python deps-promtool

# promtool, the judge of tests/metrics.rs: taken out of Debian's prometheus package into
# .tools/ rather than installing the package, whose maintainer scripts would start a
# Prometheus server listening on every interface.
PROMTOOL := $(CURDIR)/.tools/promtool
deps-promtool: deps-deb
	@if [ ! -x "$(PROMTOOL)" ]; then \
	  echo "deps: extracting promtool from Debian's prometheus package into .tools/"; \
	  tmp=$$(mktemp -d) && \
	  ( cd "$$tmp" && { apt-get download prometheus 2>/dev/null || { $(SUDO) apt-get update && apt-get download prometheus; }; } ) && \
	  dpkg-deb --fsys-tarfile "$$tmp"/prometheus_*.deb | tar -x -C "$$tmp" ./usr/bin/promtool && \
	  mkdir -p "$(CURDIR)/.tools" && mv "$$tmp/usr/bin/promtool" "$(PROMTOOL)" && rm -rf "$$tmp"; \
	fi

# nginx, the HTTP floor of the OCSP benchmark (crates/nuc-bench/src/ocsp_floor.rs): the binary
# taken out of Debian's nginx package into .tools/ the same way, since installing the package
# would start a web server on port 80. Only `make bench` needs it.
NGINX := $(CURDIR)/.tools/nginx
deps-nginx: deps-deb
	@if [ ! -x "$(NGINX)" ]; then \
	  echo "deps: extracting nginx from Debian's nginx package into .tools/"; \
	  tmp=$$(mktemp -d) && \
	  ( cd "$$tmp" && { apt-get download nginx 2>/dev/null || { $(SUDO) apt-get update && apt-get download nginx; }; } ) && \
	  dpkg-deb --fsys-tarfile "$$tmp"/nginx_*.deb | tar -x -C "$$tmp" ./usr/sbin/nginx && \
	  mkdir -p "$(CURDIR)/.tools" && mv "$$tmp/usr/sbin/nginx" "$(NGINX)" && rm -rf "$$tmp"; \
	fi

# Debian packages: apt-get runs only if `dpkg -s` says one of them is not installed.
deps-deb:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg -s "$$p" 2>/dev/null | grep -qx 'Status: install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi

# The packaging tools, installed the same way: only what `dpkg -s` says is missing.
deps-deb-packaging:
	@missing=""; \
	for p in $(DEB_PACKAGING_PACKAGES); do \
	  dpkg -s "$$p" 2>/dev/null | grep -qx 'Status: install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing Debian packages for packaging:$$missing"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi

# The browser for the console's test, installed the same way.
deps-deb-browser:
	@missing=""; \
	for p in $(DEB_BROWSER_PACKAGES); do \
	  dpkg -s "$$p" 2>/dev/null | grep -qx 'Status: install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing Debian packages for the browser test:$$missing"; \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi

# pkilint from PyPI into .venv/: only if its lint_pkix_cert is not there yet.
deps-python: deps-deb
	@if [ ! -x "$(VENV)/bin/lint_pkix_cert" ]; then \
	  echo "deps: installing pkilint into .venv/"; \
	  [ -x "$(VENV)/bin/pip" ] || $(PYTHON) -m venv --clear "$(VENV)"; \
	  "$(VENV)/bin/pip" install --disable-pip-version-check --quiet "$(PKILINT)"; \
	fi
	@# grpcio + grpcio-reflection (the v1alpha reflection client of tests/reflection.rs), pinned
	@# together: pip runs only if these exact versions are not installed yet.
	@grpc="grpcio==1.85.1 grpcio-reflection==1.85.1"; \
	if ! "$(VENV)/bin/python" -c 'import sys, importlib.metadata as m; sys.exit(any(m.version(n) != v for n, v in (a.split("==") for a in sys.argv[1:])))' $$grpc 2>/dev/null; then \
	  echo "deps: installing $$grpc into .venv/"; \
	  [ -x "$(VENV)/bin/pip" ] || $(PYTHON) -m venv --clear "$(VENV)"; \
	  "$(VENV)/bin/pip" install --disable-pip-version-check --quiet $$grpc; \
	fi

# Release build of every binary of the workspace (the `nuc` service/CLI, the bench).
build: deps
	cargo build --release --workspace --bins

# Local dev instance: create .dev-home/ with `nuc init` the first time, then serve in the
# foreground (HTTP 127.0.0.1:8470, gRPC with mutual TLS 127.0.0.1:8471, the fixture registry
# on 127.0.0.1:8472; Ctrl-C stops all). `make clean-dev` starts over.
run: build
	@if [ ! -f "$(DEV_HOME)/nuc.db" ]; then \
	  echo "run: creating the dev home $(DEV_HOME)/"; \
	  "$(NUC)" init --home "$(DEV_HOME)"; \
	fi
	@# The registry of individuals and legal entities (fixture data) beside the service; it
	@# stops when the service stops.
	"$(TARGET_DIR)/release/nuc-registry" --listen 127.0.0.1:8472 & reg=$$!; \
	trap 'kill $$reg 2>/dev/null' EXIT INT TERM; \
	"$(NUC)" serve --home "$(DEV_HOME)"

# The end-to-end test binaries (tests/Cargo.toml) that run on either engine: all but those
# that choose their engine themselves (cluster, failover: PostgreSQL always; backup: one test
# per engine) and deb (the installed package, once is enough). The second run names them with
# --workspace, not -p nuc-e2e, so that it resolves features as the first did and reuses its
# build instead of compiling the dependencies again.
E2E_FIXED_ENGINE := cluster failover deb backup
E2E_ON_BOTH := $(filter-out $(E2E_FIXED_ENGINE),$(shell awk '/^\[\[test\]\]/ { t = 1; next } t && $$1 == "name" { gsub(/"/, "", $$3); print $$3; t = 0 }' tests/Cargo.toml))

# All tests. The end-to-end tests drive the release binaries (`nuc` as NUC_BIN, `nuc-registry`,
# `nuc-station` and the card emulator `card-sim` beside it), start pcscd (as root) when none
# runs, and call pkilint's lint_* commands, found through PATH in .venv/bin. The whole
# workspace runs first (the end-to-end tests on SQLite), then the end-to-end tests of E2E_ON_BOTH again
# on PostgreSQL (NUC_TEST_STORE=postgres: a throwaway cluster per test binary, a database per test
# home). Both runs go to target/test.log; the last line sums up every test binary of both:
# "N passed, M failed", and the exit status fails if either run failed.
test: deps
	cargo build --release -p nuc-server -p nuc-registry -p nuc-station -p card-sim
	@# The Debian package that tests/deb.rs installs (as root) and removes again.
	packaging/debian/build-deb.sh "$(TARGET_DIR)"
	@set -o pipefail; mkdir -p "$(TARGET_DIR)"; status=0; \
	SECONDS=0; \
	PATH="$(VENV)/bin:$$PATH" NUC_BIN="$(NUC)" cargo test --release --workspace --no-fail-fast 2>&1 \
	  | tee "$(TARGET_DIR)/test.log" || status=$$?; \
	sqlite_s=$$SECONDS; SECONDS=0; \
	PATH="$(VENV)/bin:$$PATH" NUC_BIN="$(NUC)" NUC_TEST_STORE=postgres \
	  cargo test --release --workspace $(addprefix --test ,$(E2E_ON_BOTH)) --no-fail-fast 2>&1 \
	  | tee -a "$(TARGET_DIR)/test.log" || status=$$?; \
	echo "test: workspace (SQLite) $${sqlite_s}s, end-to-end on PostgreSQL $${SECONDS}s"; \
	awk '/^test result:/ { p += $$4; f += $$6 } END { printf "%d passed, %d failed\n", p, f }' \
	  "$(TARGET_DIR)/test.log"; \
	exit $$status

# The Debian package (packaging/debian/, docs/operations.md): the release binaries of nuc
# and nuc-registry in $(TARGET_DIR)/debian/nuc_VERSION_ARCH.deb.
deb: deps-deb deps-deb-packaging
	cargo build --release -p nuc-server -p nuc-registry
	packaging/debian/build-deb.sh "$(TARGET_DIR)"

# Benchmarks (crates/nuc-bench), release build.
bench: deps deps-nginx
	cargo build --release -p nuc-server -p nuc-registry -p nuc-station -p card-sim
	NUC_BENCH_NGINX="$(NGINX)" cargo run --release -p nuc-bench -- $(BENCH_ARGS)

# Clippy with warnings as errors on all targets, and formatting check.
lint: deps-deb
	cargo clippy --workspace --all-targets -- -D warnings
	cargo fmt --check

# Remove the dev home (its database, its SoftHSM2 token and the CA keys in it).
clean-dev:
	rm -rf "$(DEV_HOME)"
