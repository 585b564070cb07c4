# Caddy AI Gateway
GO        ?= go
BIN       := bin
CADDY     := $(BIN)/caddy
FAKELLM   := $(BIN)/fakellm
PKG       := github.com/caddy-ai-gateway/caddy-ai-gateway
FUZZTIME  ?= 30s

.PHONY: all build run test vet fmt fuzz bench bench-go clean

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
# the real Caddy; Redis tests need redis-server on PATH).
test:
	$(GO) vet ./...
	$(GO) test -race -timeout 30m ./...

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

# Load benchmark: fakellm directly vs bare reverse_proxy vs ai_gateway.
bench: build
	$(GO) run ./bench -caddy $(CADDY)

# Go micro-benchmarks of the hot path.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

clean:
	rm -rf $(BIN)
