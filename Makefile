# The two commands in the README: `make demo` and `make test`. Both set up everything first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export CELERIAC_CACHE ?= $(HOME)/.cache/celeriac

.PHONY: cluster-up cluster-down setup system-deps image-deps images venv control-plane node ci-tools lint typecheck test test-unit test-integration test-cluster demo bench crds

setup: system-deps venv control-plane node ci-tools images

# redis-server, rabbitmq-server, etcd-server and the real node's containerd, runc and CNI plugins come from Debian; the rest of the control plane is built from Go modules.
system-deps:
	@need=""; command -v redis-server >/dev/null || need="$$need redis-server"; \
	command -v rabbitmq-server >/dev/null || need="$$need rabbitmq-server"; \
	command -v etcd >/dev/null || need="$$need etcd-server"; \
	command -v kubectl >/dev/null || need="$$need kubernetes-client"; \
	command -v containerd >/dev/null || need="$$need containerd"; \
	command -v runc >/dev/null || need="$$need runc"; \
	[ -x /usr/lib/cni/bridge ] || need="$$need containernetworking-plugins"; \
	command -v iptables >/dev/null || need="$$need iptables"; \
	if [ -n "$$need" ]; then \
	  echo ">> apt-get install$$need"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need) >/dev/null; \
	fi

# Image building: mmdebstrap for the Debian-based Python base image (Docker Hub is not
# reachable everywhere), buildah as the daemonless builder when neither a working docker
# nor podman is present.
image-deps:
	@need=""; command -v mmdebstrap >/dev/null || need="$$need mmdebstrap"; \
	if ! command -v podman >/dev/null && ! command -v buildah >/dev/null && ! docker info >/dev/null 2>&1; then \
	  need="$$need buildah"; \
	fi; \
	if [ -n "$$need" ]; then \
	  echo ">> apt-get install$$need"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need) >/dev/null; \
	fi

# The operator and worker images on the cached Debian base image (hack/build-images.sh).
images: image-deps
	@bash hack/build-images.sh

$(VENV)/.installed: pyproject.toml worker-image/pyproject.toml devtools/pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]' -e './worker-image[reference]' -e ./devtools
	touch $@

venv: $(VENV)/.installed

control-plane:
	@bash hack/build-control-plane.sh >/dev/null

# The real node's kubelet, kube-proxy, metrics-server, crane and pause (tests/cluster/test_real_node.py),
# built from Go modules beside the control plane under their own stamp.
node: control-plane
	@bash hack/build-node.sh >/dev/null

# actionlint for tests/unit/test_release_workflow.py, built from its Go module into the cache.
ci-tools:
	@bash hack/build-actionlint.sh >/dev/null

crds: venv
	$(PY) -m celeriac crd --write

LINT_PATHS := $(wildcard operator devtools worker-image tests bench)

lint: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

typecheck: venv
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --config-file worker-image/pyproject.toml

test-unit: venv ci-tools
	$(VENV)/bin/pytest tests/unit -q

test-integration: setup
	$(VENV)/bin/pytest tests/integration -q

test-cluster: setup
	$(VENV)/bin/pytest tests/cluster -q

# Every tier; a tier that cannot run fails the run (no silent skips).
test: setup lint typecheck
	$(VENV)/bin/pytest tests/unit tests/integration tests/cluster -q -p no:cacheprovider

demo: setup
	$(PY) -m celeriac_dev demo --chart $(CURDIR)/deploy/celeriac

bench: venv
	$(PY) bench/run_all.py

cluster-up: setup
	$(PY) -m celeriac_dev cluster up

cluster-down: venv
	$(PY) -m celeriac_dev cluster down
