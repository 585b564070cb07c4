// Package caddyaigateway is Caddy AI Gateway's root package. Importing it
// registers the ai_gateway app and the http.handlers.ai_gateway handler with
// Caddy, so that `xcaddy build --with github.com/caddy-ai-gateway/caddy-ai-gateway`
// builds a Caddy with the gateway in it.
package caddyaigateway

import (
	_ "github.com/caddy-ai-gateway/caddy-ai-gateway/caddymodule"
)
