# Edge — make help lists the targets.
SHELL := /bin/bash
GOBIN_DIR := $(shell go env GOPATH)/bin
export PATH := $(GOBIN_DIR):$(PATH)
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/edgeproxy/edge/cli.Version=$(VERSION) -X main.version=$(VERSION)
GO_TEST_FLAGS ?= -race -timeout 30m

.PHONY: help build test chaos run cluster bench proto lint
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/edged and bin/edgectl
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o bin/edged ./cmd/edged
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o bin/edgectl ./cmd/edgectl

test: ## install test services when missing, then lint and run every test (race detector on); the e2e tests again with --standard-paths
	./scripts/install-test-deps.sh
	$(MAKE) --no-print-directory lint
	go test $(GO_TEST_FLAGS) ./...
	EDGE_E2E_STANDARD_PATHS=1 go test $(GO_TEST_FLAGS) -run 'TestE2E' ./node/

chaos: ## the fault suite (node/chaos, docs/reliability.md); CYCLES=1000 for a long run, CHAOS_SUMMARY=file keeps its summary
	./scripts/install-test-deps.sh
	CYCLES=$(CYCLES) CHAOS_SUMMARY=$(CHAOS_SUMMARY) go test -race -count=1 -timeout 12h -v ./node/chaos/

run: build ## run a throwaway single-node dev Edge (admin 127.0.0.1:7001, HTTP 127.0.0.1:8080)
	./bin/edged --dev --id dev --admin-addr 127.0.0.1:7001 --raft-addr 127.0.0.1:7000 --http-addr 127.0.0.1:8080 --metrics-addr 127.0.0.1:9090

cluster: build ## run a local 3-node cluster with the StatefulSet's flags (scripts/dev-cluster.sh)
	./scripts/dev-cluster.sh

bench: build ## Go micro-benchmarks and the whole-system wrk run against nginx (scripts/bench)
	./scripts/bench

proto: ## regenerate api/edgev1 with pinned protoc plugins
	./scripts/proto.sh

lint: ## gofmt, go vet and staticcheck (scripts/install-test-deps.sh installs it)
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...
	staticcheck ./...
