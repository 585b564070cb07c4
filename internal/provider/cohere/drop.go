package cohere

import "github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"

var _ provider.UnsupportedDropper = (*Provider)(nil)

// DropsUnsupported implements provider.UnsupportedDropper.
func (p *Provider) DropsUnsupported() bool { return p.cfg.DropUnsupported }
