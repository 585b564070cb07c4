# Build the same Caddy with xcaddy instead of cmd/caddy:
#   make -f xcaddy.mk
# xcaddy imports the module's root package, which registers the ai_gateway
# app and handler.
GO        ?= go
GOBIN     := $(shell $(GO) env GOPATH)/bin
XCADDY    := $(GOBIN)/xcaddy
CADDY_VER ?= v2.11.9
OUT       ?= bin/caddy-xcaddy

.PHONY: xcaddy
xcaddy: $(XCADDY)
	$(XCADDY) build $(CADDY_VER) --output $(OUT) \
		--with github.com/caddy-ai-gateway/caddy-ai-gateway@v0.0.0-00010101000000-000000000000=.
	$(OUT) list-modules | grep ai_gateway

$(XCADDY):
	$(GO) install github.com/caddyserver/xcaddy/cmd/xcaddy@latest
