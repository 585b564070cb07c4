package openaicompat

import "github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"

var _ provider.Speaker = (*Provider)(nil)

// Speaks implements provider.Speaker: OpenAI's format.
func (p *Provider) Speaks(f provider.Format) bool { return f == provider.FormatOpenAI }
