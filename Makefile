# Caddy AI Gateway
GO        ?= go
BIN       := bin
CADDY     := $(BIN)/caddy
FAKELLM   := $(BIN)/fakellm
PKG       := github.com/caddy-ai-gateway/caddy-ai-gateway
FUZZTIME  ?= 30s

.PHONY: all build run test test-deps deps-chroma vet fmt fuzz bench bench-peers bench-go clean

all: build

build:
	$(GO) build -o $(CADDY) ./cmd/caddy
	$(GO) build -o $(FAKELLM) ./cmd/fakellm

# Runs the gateway on :8080 with Caddyfile.example and a fakellm upstream on
# 127.0.0.1:9999 serving the `demo` model.
run: build
	@$(FAKELLM) -addr 127.0.0.1:9999 & fake=$$!; \
	trap 'kill $$fake 2>/dev/null' INT TERM; \
	$(CADDY) run --config Caddyfile.example --adapter caddyfile; status=$$?; \
	kill $$fake 2>/dev/null; exit $$status

# Vet, then every test with the race detector (the e2e tests build and start
# the real Caddy and their own redis-server processes).
test: test-deps
	$(GO) vet ./...
	$(GO) test -race -timeout 30m ./...

# What the tests need besides Go. Each dependency is a deps-<name> target
# listed in TEST_DEPS; its recipe is $(call need,<commands>,<apt packages>,<how
# to get them>). A later dependency with another installer gets its own
# target and recipe.
TEST_DEPS := deps-redis deps-chroma

test-deps: $(TEST_DEPS)

deps-redis:
	$(call need,redis-server redis-cli,redis-server,install the redis-server package as root (apt-get install redis-server) or put both on PATH)

# A real Chroma server for the RAG tests (internal/testutil/chromatest):
# npm chromadb with its native bindings pinned together (3.0.6 otherwise
# resolves a newer binding that needs a newer glibc), installed into
# CHROMA_DIR (git ignores .deps/); a no-op once the pinned versions are in.
CHROMA_DIR      := .deps/chroma
CHROMA_PACKAGES := chromadb@3.0.6 chromadb-js-bindings-linux-x64-gnu@1.0.1

deps-chroma:
	$(call need,npm npx,npm,install Node.js and npm (apt-get install nodejs npm) or put npm and npx on PATH)
	@if grep -qs '"version": "3.0.6"' $(CHROMA_DIR)/node_modules/chromadb/package.json && \
		grep -qs '"version": "1.0.1"' $(CHROMA_DIR)/node_modules/chromadb-js-bindings-linux-x64-gnu/package.json; then :; else \
		echo "test-deps: installing $(CHROMA_PACKAGES) into $(CHROMA_DIR)"; \
		mkdir -p $(CHROMA_DIR) && npm install --prefix $(CHROMA_DIR) --no-audit --no-fund --no-package-lock $(CHROMA_PACKAGES) >/dev/null || exit 1; \
	fi

# missing: the commands of $(1) that are not on PATH.
missing = $(strip $(foreach c,$(1),$(if $(shell command -v $(c) 2>/dev/null),,$(c))))
# can_apt: non-empty when running as root on a machine with apt-get.
can_apt = $(and $(filter 0,$(shell id -u 2>/dev/null)),$(shell command -v apt-get 2>/dev/null))
# need: a recipe line that does nothing when the commands $(1) are on PATH,
# installs the packages $(2) when it can, and otherwise stops make with one
# line naming what is missing and $(3).
need = $(if $(call missing,$(1)),$(if $(can_apt),$(call apt_install,$(1),$(2)),$(error test-deps: $(call missing,$(1)) not on PATH: $(3))),@:)
apt_install = @echo "test-deps: installing $(2) (for $(call missing,$(1)))"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null || exit 1; \
	for c in $(1); do command -v $$c >/dev/null 2>&1 || { echo "test-deps: $$c still not on PATH after installing $(2)" >&2; exit 1; }; done

# Runs every Fuzz* target in the repository for FUZZTIME each, one after
# another (go test fuzzes one target per invocation), and fails at the end if
# any target failed; the failing input is saved under the package's
# testdata/fuzz/<Target>/. Not part of `make test`.
fuzz:
	@failed=; \
	for t in $$(grep -rE --include='*_test.go' -o '^func Fuzz[A-Za-z0-9_]*' . | \
			sed -E 's|^(.*)/[^/]*:func (Fuzz[A-Za-z0-9_]*)$$|\1:\2|' | sort); do \
		dir=$${t%%:*}; name=$${t#*:}; \
		echo "== $$dir $$name ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$dir || failed="$$failed $$dir:$$name"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz targets failed:$$failed"; exit 1; fi

fmt:
	gofmt -w $$(git ls-files '*.go')

# Load benchmark: fakellm directly vs bare reverse_proxy vs ai_gateway
# (passthrough, and the full pipeline in process and with its own
# redis-server), plus the peer gateways installed by bench-peers. Extra flags
# in BENCH_FLAGS, e.g. BENCH_FLAGS="-out bench/results.md" (also writes
# bench/results.png). Not part of `make test`.
BENCH_FLAGS ?=
bench: build
	$(GO) run ./bench -caddy $(CADDY) $(BENCH_FLAGS)

# Installs the peer gateways `make bench` compares against (Portkey's,
# versions pinned in bench/peers/package.json) into bench/peers/node_modules.
# Optional: without it the benchmark skips the peers with a note.
bench-peers:
	cd bench/peers && npm install --no-audit --no-fund --no-package-lock

# Go micro-benchmarks of the hot path.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

clean:
	rm -rf $(BIN)
