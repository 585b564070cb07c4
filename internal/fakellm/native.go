package fakellm

import "strings"

// serveNative answers the providers' native (non-OpenAI) APIs: Anthropic
// Messages, Google Gemini and Cohere v2. Each wire format lives in its own
// file (anthropic.go, gemini.go, cohere.go). It reports whether the path was
// one of theirs.
func (s *Server) serveNative(x *exchange) bool {
	p := x.r.URL.Path
	switch {
	case p == "/v1/messages":
		s.anthropicMessages(x)
	case strings.Contains(p, "/models/") && strings.Contains(p, ":") &&
		(strings.HasPrefix(p, "/v1beta/") || strings.HasPrefix(p, "/v1/")):
		s.gemini(x)
	case p == "/v2/chat" || p == "/v2/embed":
		s.cohere(x)
	default:
		return false
	}
	return true
}
