# mkimage: `make` builds the tool into bin/, `make test` runs every test
# (unit and end-to-end; see README "Testing").
GO ?= go
# staticcheck, pinned (a new release must not fail a build with new
# checks), installed from the module proxy by the first `make vet` as the
# user running it (setup-debian.sh runs as root).
STATICCHECK_VERSION = v0.8.2
STATICCHECK ?= $(shell $(GO) env GOPATH)/bin/staticcheck-$(STATICCHECK_VERSION)
export CGO_ENABLED ?= 0

.PHONY: all build test test-short vet bench fuzz clean

all: build

# The binary remembers this checkout: it builds nodeinit from it.
build:
	$(GO) build -ldflags "-X github.com/mkimage/mkimage/initramfs.DefaultSourceDir=$(CURDIR)" -o bin/mkimage ./cmd/mkimage

$(STATICCHECK):
	GOFLAGS= GOBIN=$(CURDIR)/.staticcheck-tmp $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mkdir -p $(dir $@) && mv $(CURDIR)/.staticcheck-tmp/staticcheck $@ && rmdir $(CURDIR)/.staticcheck-tmp

vet: $(STATICCHECK)
	$(GO) vet ./...
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum not tidy: run go mod tidy"; $(GO) mod tidy -diff; exit 1; }
	$(STATICCHECK) ./...
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }

# The full suite: unit tests, real-tool checks and QEMU boots. Needs the
# packages from scripts/setup-debian.sh; arm64 debs are fetched into the
# cache (~/.cache/mkimage) on first use.
test: vet
	$(GO) test -count=1 -timeout 88m ./...

# Unit tests only (no QEMU boots, no kernel builds).
test-short:
	$(GO) test -short ./...

# Every fuzz target, one after the other, FUZZTIME each (default 30s);
# see scripts/fuzz.sh.
FUZZTIME ?= 30s
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) scripts/fuzz.sh

bench:
	for b in bench/*.sh; do echo "== $$b"; bash $$b; done

clean:
	rm -rf bin
