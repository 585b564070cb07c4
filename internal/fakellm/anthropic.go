package fakellm

import "net/http"

// anthropicMessages answers the native anthropic API. Not implemented yet.
func (s *Server) anthropicMessages(x *exchange) {
	x.writeError(http.StatusNotFound, "native anthropic API not implemented", "", "")
}
