// Package e2e holds the end-to-end tests: they build the real Caddy binary
// (cmd/caddy), start it with a Caddyfile against cmd/fakellm upstreams (and,
// where a test needs them, a real redis-server), and drive it with the
// official openai-go SDK.
package e2e
