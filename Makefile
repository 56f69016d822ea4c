# clusterflow: build, check and test. `make test` is the one command CI runs.
SHELL := /bin/bash
export GOTOOLCHAIN := local
GO      ?= go
TOOLS   := $(CURDIR)/.cache/tools
STATICCHECK_VERSION   := v0.8.2
WORKFLOWCHECK_VERSION := v0.6.0

.PHONY: build check lint lint-scripts test test-unit test-integration test-lab test-faults test-fuzz test-browser demo demo-stop bench tools clean

build:
	$(GO) build -o bin/worker ./worker
	$(GO) build -o bin/starter ./starter

tools: $(TOOLS)/staticcheck $(TOOLS)/workflowcheck
$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
$(TOOLS)/workflowcheck:
	GOBIN=$(TOOLS) $(GO) install go.temporal.io/sdk/contrib/tools/workflowcheck@$(WORKFLOWCHECK_VERSION)

# Static checks (formatting, vet, staticcheck, workflow determinism, tidy go.mod,
# the shell scripts the activities run on hosts), then the unit tests with the race
# detector.
check: lint test-unit

# The remote shell scripts (embedded by the activities), checked by sh -n and
# shellcheck (Debian package shellcheck; lab/prereqs.sh installs it).
SCRIPTS = activities/scripts/*.sh activities/remote/*.sh

lint: tools lint-scripts
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration,lab,browser ./...
	$(TOOLS)/staticcheck ./...
	$(TOOLS)/workflowcheck ./workflows/...
	@bak=$$(mktemp -d); cp go.mod go.sum "$$bak"/; \
	  $(GO) mod tidy; \
	  if ! cmp -s go.mod "$$bak"/go.mod || ! cmp -s go.sum "$$bak"/go.sum; then \
	    diff -u "$$bak"/go.mod go.mod | head -40; cp "$$bak"/go.mod "$$bak"/go.sum .; rm -rf "$$bak"; \
	    echo "go mod tidy changes go.mod/go.sum: run it and check the pinned versions"; exit 1; fi; \
	  rm -rf "$$bak"

lint-scripts:
	@command -v shellcheck >/dev/null 2>&1 || { echo "shellcheck is missing: apt-get install shellcheck (or bash lab/prereqs.sh)"; exit 1; }
	@for f in $(SCRIPTS); do sh -n "$$f" || { echo "sh -n: $$f does not parse"; exit 1; }; done
	shellcheck --severity=style $(SCRIPTS)

# Unit tests: fast, no Docker; the SSH tests use a real sshd on loopback. The packages
# that link the embedded Temporal server have no unit tests and are left out: building
# the server again with -race would cost minutes for nothing.
UNIT_PKGS = $$($(GO) list ./... | grep -v -e /worker$$ -e /starter$$ -e /internal/app$$ -e /internal/devserver$$)
test-unit:
	CLUSTERFLOW_REQUIRE_SSHD=1 $(GO) test -race -count=1 $(UNIT_PKGS)

# Integration: the real embedded Temporal server in its own process, real sshd,
# worker processes killed with SIGKILL; TestServerCluster runs two servers on a
# PostgreSQL of its own (Debian's postgresql, run as the postgres account) with mTLS.
test-integration:
	CLUSTERFLOW_REQUIRE_SSHD=1 CLUSTERFLOW_REQUIRE_POSTGRES=1 $(GO) test -tags integration -count=1 -timeout 20m ./internal/e2e/...

# Lab: Debian nodes in containers with their own sshd (and Docker engine).
# The embedded Web UI in Debian's headless Chromium (loopback only): start RunPlaybook
# from the form, find the run by its search attributes. Screenshots in .cache/screenshots.
test-browser:
	mkdir -p .cache/screenshots
	CLUSTERFLOW_SCREENSHOT_DIR=$(CURDIR)/.cache/screenshots $(GO) test -tags browser -count=1 -timeout 10m -run WebUI ./internal/e2e/

# Each test package brings up labs of its own (cf-labtest-XXXX, cf-e2e-XXXXXX), beside
# any other lab, and removes them; -p 1 runs one package at a time (they are heavy,
# not exclusive). `lab consul` first: the consul binary the Consul tests send to the
# nodes, from the cache directory (/var/cache/clusterflow), or built when missing
# (~20 min cold on 2 cores).
# `lab repo`: the lab apt repository's packages (docker.io and its dependencies), the
# nodes' only package source, downloaded once per node image into the same cache; the
# tests never download them (CLUSTERFLOW_LAB_NO_FETCH=1) and reach no outside mirror.
test-lab:
	$(GO) run ./lab repo >/dev/null
	$(GO) run ./lab consul >/dev/null
	$(GO) test -tags lab -p 1 -count=1 -timeout 45m ./lab/... ./internal/e2e/...

# The long fault suite behind docs/RELIABILITY.md: 5 fresh-lab bootstraps with 20
# worker SIGKILLs and 5 server restarts at random points, then the partition, host
# key and concurrent-run checks and the secrets scan (about 15 min). `make test-lab`
# runs the short variant (1 bootstrap, 2 kills, 1 restart). Set
# CLUSTERFLOW_FAULT_SEED to repeat a run's fault points.
FAULT_TRIALS   ?= 5
FAULT_KILLS    ?= 20
FAULT_RESTARTS ?= 5
test-faults:
	$(GO) run ./lab repo >/dev/null
	$(GO) run ./lab consul >/dev/null
	CLUSTERFLOW_FAULT_TRIALS=$(FAULT_TRIALS) CLUSTERFLOW_FAULT_KILLS=$(FAULT_KILLS) CLUSTERFLOW_FAULT_RESTARTS=$(FAULT_RESTARTS) \
	  $(GO) test -tags lab -count=1 -timeout 60m -run TestLabFaults -v ./internal/e2e/

# Every fuzz target for FUZZTIME each, one at a time on one core.
FUZZTIME ?= 2m
test-fuzz:
	@for t in ./playbooks:FuzzParse ./playbooks:FuzzParseSums ./internal/codec:FuzzParseKeys ./internal/codec:FuzzDecode \
	  ./activities:FuzzParseSHA256SUMS ./activities:FuzzParseKeyLines ./activities:FuzzParseRemoteState ./workflows:FuzzRunPlaybookInput; do \
	  echo "== $${t#*:}"; $(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) -parallel 1 $${t%%:*} || exit 1; done

# The whole suite on a fresh machine: installs prerequisites, runs everything,
# and stops what it started: a Docker engine only when this invocation started it
# (owner make-test-PID), so the engine of a `make demo` stays up, and so does its lab
# (the tests use labs of their own).
test:
	@owner=make-test-$$$$; \
	  bash lab/prereqs.sh --owner $$owner || exit 1; \
	  trap "bash lab/prereqs.sh --stop --owner $$owner" EXIT; \
	  $(MAKE) --no-print-directory check test-integration test-browser test-lab

# Runs the cluster playbook (SSH keys in a mesh, Docker, a 3-server Consul cluster,
# a swarm with an overlay network and a replicated service) on the default 3-node lab
# (clusterflow-lab). The nodes install Docker from the lab apt repository (`lab
# repo`), not from Debian's mirror. The embedded Temporal server and its Web UI run in
# the demo worker, a background `bin/worker` (pid and log in .clusterflow/worker.*),
# which stays up with the lab so that the printed Web UI link keeps working; a second
# `make demo` reuses both and every step reports unchanged. `make demo-stop` stops
# what the demo started (lab/demo.sh).
DEMO_LAB := clusterflow-lab
demo:
	@bash lab/prereqs.sh --owner demo
	$(GO) run ./lab repo >/dev/null
	$(GO) run ./lab --name $(DEMO_LAB) consul >/dev/null
	$(GO) run ./lab --name $(DEMO_LAB) up
	$(MAKE) --no-print-directory build
	@bash lab/demo.sh worker
	bin/starter run playbooks/cluster.yaml
	@bash lab/demo.sh summary

# Stops the demo worker, takes the demo's lab down, and stops the Docker engine if
# `make demo` started it. The history (.clusterflow/temporal.db) stays.
demo-stop:
	@bash lab/demo.sh stop

# clusterflow against Ansible and raw parallel ssh (docs/BENCHMARKS.md): fan-out on
# 10-500 loopback sshd hosts, per-step overhead, bootstrap and file transfer on the lab,
# resume after a worker kill. As root; installs Ansible with apt when missing; about
# 30 minutes; rewrites the table in docs/BENCHMARKS.md. Not part of `make test`.
bench:
	@bash lab/prereqs.sh
	$(GO) run ./lab repo >/dev/null
	$(GO) run ./bench

clean:
	rm -rf bin .cache
