# mud — build, test and lint. `sudo make test` installs what it needs.
GO       ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
# The development tools (staticcheck) are pinned in tools/go.mod, a module of
# their own so that their dependencies stay out of mudd's go.mod; `go tool`
# builds and runs them at the pinned version.
TOOLMOD  := -modfile=$(CURDIR)/tools/go.mod
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 10s
export CGO_ENABLED ?= 0

.PHONY: all build docs test unit fuzz lint deps bench bench-scale scale-lab clean demo package dist openwrt-feed

all: build

# build: bin/mudd, which is mudctl too when invoked under that name
# (bin/mudctl is a symbolic link to it, as the packages install it), and
# bin/mudlab, the demo.
build:
	mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/mudd ./cmd/mudlab
	ln -sfn mudd bin/mudctl

# docs: the man pages and mudctl's shell completions, generated from the
# command trees into build/doc (man/man1, man/man8, completions/), dated
# by the last commit so that the same commit gives the same pages.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

docs:
	rm -rf build/doc
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./internal/gendocs -version '$(VERSION)' -out build/doc

deps:
	./scripts/install-deps.sh

# test: everything CI runs. Root is needed for the network-namespace tests.
test: deps lint unit fuzz

# packaging/ is a module of its own (it needs nfpm, which mudd does not), so
# ./... of the main module leaves it out: lint and unit visit it as well.
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) tool $(TOOLMOD) staticcheck ./...
	$(GO) -C packaging vet ./...
	$(GO) -C packaging tool $(TOOLMOD) staticcheck ./...

# -race needs cgo.
unit:
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 30m ./...
	# Tests too slow under the race detector are built for this run only.
	$(GO) test -count=1 -timeout 10m -run 'TestRandomisedMACsForgotten' ./manager/
	CGO_ENABLED=1 $(GO) -C packaging test -race -count=1 -timeout 30m ./...

# Every fuzz target, for FUZZTIME each, seeded from testdata.
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz-all.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# bench-scale: mudd with 0, about 1,000 and 10,000 devices in a lab (needs
# root, dnsmasq, Kea; about 5 minutes), the results in build/bench-scale.txt
# and their chart in e2e/scale/scale.svg.
# scale-lab: the 2,000-device lab test with a SIGKILL and restart, alone
# (needs root, dnsmasq, Kea; about a minute; unit runs it too).
scale-lab:
	$(GO) test -count=1 -run TestLabScale ./e2e/scale/

bench-scale:
	mkdir -p build
	$(GO) test -run '^$$' -bench Scale -benchtime 1x -timeout 60m ./e2e/scale/ > build/bench-scale.txt; \
	  status=$$?; cat build/bench-scale.txt; exit $$status
	$(GO) run ./e2e/scale/plot -o e2e/scale/scale.svg build/bench-scale.txt

clean:
	rm -rf bin build dist

# demo: the MUD enforcement demonstration in network namespaces (needs root;
# it removes everything it creates, also on failure or Ctrl-C).
demo:
	./scripts/install-deps.sh
	$(MAKE) build  # bin/mudd (and mudctl) and bin/mudlab
	./bin/mudlab --mudd bin/mudd

# package: .deb and .rpm for this machine's architecture, and OpenWrt .ipk
# files for common targets (GOARCH:OpenWrt package architecture; override
# IPK_TARGETS for yours), into dist/. The static binary goes to
# bin/linux_ARCH/mudd, or bin/openwrt_ARCH/mudd for the .ipk (with mudctl
# linked to it), built here in mud's own
# module; packaging/mkpkg (a module of its own) only packs it, with the
# man pages and completions of `make docs`.
HOSTARCH    := $(shell $(GO) env GOARCH)
IPK_TARGETS ?= arm64:aarch64_cortex-a53 arm:arm_cortex-a7_neon-vfpv4 mipsle:mipsel_24kc
MKPKG        = SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) -C packaging run ./mkpkg -root $(CURDIR) -version '$(VERSION)' -out $(CURDIR)/dist
# BUILD_FOR(GOARCH, DIR, TAGS). The OpenWrt binaries are built with the tags
# nodashboard and nofleet: the web dashboard would add 4.5 MiB to a router's
# flash, the etcd client of store.backend etcd 10 MiB (packaging/README.md,
# Size).
BUILD_FOR    = GOOS=linux GOARCH=$(1) GOARM=7 GOMIPS=softfloat $(GO) build -trimpath -tags '$(3)' -ldflags '$(LDFLAGS)' -o $(2)/ ./cmd/mudd && ln -sfn mudd $(2)/mudctl
IPK_TAGS    := nodashboard nofleet

package: docs
	$(call BUILD_FOR,$(HOSTARCH),bin/linux_$(HOSTARCH),)
	$(MKPKG) -config nfpm.yaml -arch $(HOSTARCH) -bindir $(CURDIR)/bin/linux_$(HOSTARCH) -docdir $(CURDIR)/build/doc -formats deb,rpm
	set -e; for t in $(IPK_TARGETS); do \
		arch=$${t%%:*}; \
		$(call BUILD_FOR,$$arch,bin/openwrt_$$arch,$(IPK_TAGS)); \
		$(MKPKG) -config openwrt/nfpm.yaml -arch $$arch -ipk-arch $${t#*:} -bindir $(CURDIR)/bin/openwrt_$$arch -formats ipk; \
	done

# dist: the source tarball of the commit HEAD, dist/mud-VERSION.tar.gz
# (VERSION as the packages state it: tag v1.2.3 gives 1.2.3), the same bytes
# every time for the same commit. openwrt-feed: that tarball and the OpenWrt
# feed package that builds from it, with its SHA-256, in dist/openwrt-feed/.
# The tarball holds HEAD, so its version leaves uncommitted changes out.
SRC_VERSION := $(shell git describe --tags --always 2>/dev/null || echo dev)
MKDIST       = $(GO) -C packaging run ./mkdist -repo $(CURDIR) -rev HEAD -version '$(SRC_VERSION)' -out $(CURDIR)/dist

dist:
	$(MKDIST)

openwrt-feed:
	$(MKDIST) -openwrt-feed
