// Command caddy is Caddy with the standard modules and Caddy AI Gateway.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-ai-gateway/caddy-ai-gateway"
)

func main() { caddycmd.Main() }
