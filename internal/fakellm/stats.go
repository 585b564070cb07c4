package fakellm

import (
	"encoding/json"
	"maps"
	"net/http"
)

// historySize is the number of recent requests kept in [Stats].
const historySize = 100

// Stats is a snapshot of what the server received.
type Stats struct {
	// Requests counts requests by URL path, e.g. "/v1/chat/completions".
	Requests map[string]int
	// Total counts all requests.
	Total int
	// Cancelled counts requests whose client went away (context cancelled
	// or write failure) before the server finished answering.
	Cancelled int
	// InFlight is the number of requests being answered right now.
	InFlight int
	// Bodies, Headers and Paths describe the last 100 requests, oldest
	// first: raw body, header (cloned, including Authorization / api-key)
	// and request URI (path?query). Bodies must not be modified.
	Bodies  [][]byte
	Headers []http.Header
	Paths   []string
}

// recorder holds the counters; guarded by Server.mu.
type recorder struct {
	requests  map[string]int
	total     int
	cancelled int
	inFlight  int
	// ring buffer of the last historySize requests
	next    int
	full    bool
	bodies  [historySize][]byte
	headers [historySize]http.Header
	paths   [historySize]string
}

func (rec *recorder) init() {
	inFlight := rec.inFlight
	*rec = recorder{requests: make(map[string]int), inFlight: inFlight}
}

// begin records an incoming request before it is answered.
func (s *Server) begin(r *http.Request, body []byte) {
	h := r.Header.Clone()
	uri := r.URL.RequestURI()
	s.mu.Lock()
	rec := &s.stats
	rec.requests[r.URL.Path]++
	rec.total++
	rec.inFlight++
	rec.bodies[rec.next] = body
	rec.headers[rec.next] = h
	rec.paths[rec.next] = uri
	rec.next++
	if rec.next == historySize {
		rec.next, rec.full = 0, true
	}
	s.mu.Unlock()
}

// end marks the end of a request's handling.
func (s *Server) end() {
	s.mu.Lock()
	s.stats.inFlight--
	s.mu.Unlock()
}

// Stats returns a snapshot of the counters and recent requests.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := &s.stats
	st := Stats{
		Requests:  maps.Clone(rec.requests),
		Total:     rec.total,
		Cancelled: rec.cancelled,
		InFlight:  rec.inFlight,
	}
	start, n := 0, rec.next
	if rec.full {
		start, n = rec.next, historySize
	}
	st.Bodies = make([][]byte, 0, n)
	st.Headers = make([]http.Header, 0, n)
	st.Paths = make([]string, 0, n)
	for i := range n {
		j := (start + i) % historySize
		st.Bodies = append(st.Bodies, rec.bodies[j])
		st.Headers = append(st.Headers, rec.headers[j].Clone())
		st.Paths = append(st.Paths, rec.paths[j])
	}
	return st
}

// Reset clears the statistics, the queue and the scripts. InFlight keeps
// tracking the requests still being answered.
func (s *Server) Reset() {
	s.mu.Lock()
	s.stats.init()
	s.queue = nil
	clear(s.scripts)
	s.mu.Unlock()
}

// serveStats serves the counters (not the bodies) as JSON.
func (s *Server) serveStats(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s.mu.Lock()
	out := struct {
		Total     int            `json:"total"`
		Cancelled int            `json:"cancelled"`
		InFlight  int            `json:"in_flight"`
		Queued    int            `json:"queued"`
		Requests  map[string]int `json:"requests"`
	}{s.stats.total, s.stats.cancelled, s.stats.inFlight, len(s.queue), maps.Clone(s.stats.requests)}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}
