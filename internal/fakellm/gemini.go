package fakellm

import "net/http"

// gemini answers the native gemini API. Not implemented yet.
func (s *Server) gemini(x *exchange) {
	x.writeError(http.StatusNotFound, "native gemini API not implemented", "", "")
}
