package fakellm

import "net/http"

// cohere answers the native cohere API. Not implemented yet.
func (s *Server) cohere(x *exchange) {
	x.writeError(http.StatusNotFound, "native cohere API not implemented", "", "")
}
