# falbridge — developer entry points. `make help` lists them.
GO        ?= go
PKGS      ?= ./...
BIN       ?= bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/falbridge/falbridge/internal/version.Version=$(VERSION)
GOBIN_DIR := $(or $(shell $(GO) env GOBIN),$(shell $(GO) env GOPATH)/bin)
# The staticcheck CI uses; `make lint` installs it into GOBIN_DIR when missing.
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(GOBIN_DIR)/staticcheck)

.PHONY: help test unit vet lint fmt build install dev demo e2e-cli fuzz clean image deploy-check chaos chaos-quick bench

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

test: vet lint deploy-check e2e-cli demo chaos-quick unit ## vet, staticcheck, manifest checks, the nats CLI end-to-end check, the demo, the short chaos run (lost/dup/double bill/wrong counted, exit 1 on any), then the race-enabled suite (its summary last)

unit: ## the race-enabled go test suite
	$(GO) test -race -count=1 -timeout 12m $(PKGS)

e2e-cli: ## falbridge dev driven by the plain nats CLI (installs it if missing)
	bash scripts/nats-cli-e2e.sh

DEV_FLAGS ?=
dev: ## run falbridge dev (embedded NATS + fal simulator + bridge on loopback) until Ctrl-C; DEV_FLAGS adds flags
	@$(GO) build -o $(BIN)/falbridge ./cmd/falbridge
	@# exec, not go run: go run exits 1 after Ctrl-C even when falbridge stopped cleanly, and make reports it as an error.
	exec $(BIN)/falbridge dev $(DEV_FLAGS)

demo: ## offline end-to-end demo: dev, publish --wait, a bad trigger, status (scripts/demo.sh)
	GO=$(GO) BIN=$(BIN) bash scripts/demo.sh

vet: ## go vet
	$(GO) vet $(PKGS)

lint: ## gofmt check, then staticcheck (installs staticcheck STATICCHECK_VERSION into GOBIN_DIR when missing, as CI does)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	@sc="$(STATICCHECK)"; if [ ! -x "$$sc" ]; then \
	  echo "installing staticcheck $(STATICCHECK_VERSION) into $(GOBIN_DIR)"; \
	  GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) && sc="$(GOBIN_DIR)/staticcheck"; fi; \
	echo "$$sc $(PKGS)"; "$$sc" $(PKGS)

fmt: ## gofmt the tree
	gofmt -s -w .

build: ## build the binaries into ./bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

bench: ## falbridge vs a naive worker, separate processes, figures printed (tools/bench; BENCH_QUICK=1: ~2 min)
	$(GO) build -o $(BIN)/bench ./tools/bench
	BENCH_BIN=$(BIN) GO=$(GO) $(BIN)/bench

install: ## install falbridge and falsim into GOBIN_DIR (go env GOBIN, else GOPATH/bin) and say whether it is on PATH
	$(GO) install -trimpath -ldflags '$(LDFLAGS)' ./cmd/...
	@echo "installed falbridge and falsim in $(GOBIN_DIR)"
	@case ":$$PATH:" in *":$(GOBIN_DIR):"*) ;; \
	  *) echo "$(GOBIN_DIR) is not on your PATH; add it: export PATH=\"$(GOBIN_DIR):\$$PATH\"";; esac

FUZZTIME ?= 20s
fuzz: ## run every fuzz target for FUZZTIME each
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

clean: ## remove build output
	rm -rf $(BIN)

IMAGE ?= falbridge:$(VERSION)
image: ## build the container image IMAGE (default falbridge:VERSION) from the Dockerfile; needs a Docker engine, which CI lacks
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

deploy-check: ## check deploy/ (own module tools/deploycheck): kustomize renders, strict Kubernetes schemas, probes and ports vs the binary, dashboard metrics
	cd tools/deploycheck && $(GO) test -count=1 ./...

CHAOS_FLAGS ?=
chaos: ## separate processes (3-node NATS cluster, simulator, 3 replicas) under faults, counted from outside (tools/chaos); CHAOS_QUICK=1 for the short run, CHAOS_FLAGS for more
	$(GO) run ./tools/chaos $(CHAOS_FLAGS)

chaos-quick: ## the short chaos run: a few hundred triggers, the most telling scenarios (a few minutes)
	CHAOS_QUICK=1 $(GO) run ./tools/chaos $(CHAOS_FLAGS)
