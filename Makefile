# mud — build, test and lint. `sudo make test` installs what it needs.
GO       ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
GOBIN    := $(shell $(GO) env GOPATH)/bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 10s
export CGO_ENABLED ?= 0

.PHONY: all build test unit fuzz lint deps bench clean demo

all: build

build:
	mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

deps:
	GO=$(GO) ./scripts/install-deps.sh

# test: everything CI runs. Root is needed for the network-namespace tests.
test: deps lint unit fuzz

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GOBIN)/staticcheck ./...

# -race needs cgo.
unit:
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 30m ./...

# Every fuzz target, for FUZZTIME each, seeded from testdata.
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz-all.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin

# demo: the MUD enforcement demonstration in network namespaces (needs root;
# it removes everything it creates, also on failure or Ctrl-C).
demo:
	GO=$(GO) ./scripts/install-deps.sh
	$(MAKE) build  # bin/mudd, bin/mudctl and bin/mudlab
	./bin/mudlab --mudd bin/mudd --mudctl bin/mudctl
