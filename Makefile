# kubectl-gw developer tasks. `make example` runs the tool offline on examples/;
# `make test` does everything a fresh machine needs and then runs every test.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
export GOTOOLCHAIN := local
export PATH := $(CURDIR)/$(BIN):$(PATH):/usr/local/go/bin

.PHONY: system-deps test example venv test-bins crds lint unit cluster-up cluster-down bench demo dist clean

## test: system packages, venv + package, test binaries (kube-apiserver, etcd), CRDs, lint, then all tests
test: system-deps venv test-bins crds lint
	$(PY) -m pytest -v tests/unit tests/cluster tests/bench

## example: run the main job offline on the bundled examples (no cluster needed)
example: venv
	$(BIN)/kubectl-gw migrate -f examples/ingress-nginx
	$(BIN)/kubectl-gw migrate -f examples/emissary --output-dir $(CURDIR)/build/example-emissary
	$(BIN)/kubectl-gw describe -f examples/describe

## system-deps: Graphviz for the describe -o dot rendering test, iproute2 for the test network
system-deps:
	@command -v dot >/dev/null && command -v ip >/dev/null || { \
	  command -v apt-get >/dev/null || { echo "install graphviz and iproute2" >&2; exit 1; }; \
	  apt-get update -qq && apt-get install -y -qq graphviz iproute2 >/dev/null; }

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip "setuptools>=77" wheel
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

## test-bins: build kube-apiserver and etcd from Go modules (cached outside git)
test-bins: venv
	$(PY) -m tests.realparts.bins ensure

## crds: download the Gateway API, Envoy Gateway and Emissary CRDs from their Go modules
crds: venv
	$(PY) -m tests.realparts.crds fetch

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: venv
	$(PY) -m pytest -q tests/unit

## cluster-up / cluster-down: a real control plane to try the tool by hand
cluster-up: venv test-bins
	$(PY) -m tests.realparts.controlplane up

cluster-down: venv
	$(PY) -m tests.realparts.controlplane down

## bench: benchmarks, printed as ratios against anchors measured in the same run
bench: venv test-bins crds
	$(PY) -m tests.bench.bench_startup
	$(PY) -m tests.bench.bench_migrate --sizes 1000,10000
	$(PY) -m tests.bench.bench_controller
	$(PY) -m tests.bench.bench_dist

## demo: test cluster, example Ingresses, migrate --apply, controller + Envoy, curls, teardown
demo: venv test-bins crds
	$(PY) scripts/demo.py

## dist: wheel + sdist, the single-file plugin in one krew archive per platform, and
## krew-manifest.yaml with their sha256 (scripts/build_dist.py; outputs in dist/)
dist: venv
	$(PY) scripts/build_dist.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
