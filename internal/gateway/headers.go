package gateway

import (
	"net/http"
	"strconv"
)

// autoLengthMax: a body of fewer bytes, written with one Write before the
// handler returns, gets its Content-Length from the server itself (net/http
// buffers that much before it must choose chunked framing, HTTP/2 and
// HTTP/3 more): without an entry in the header map, which then stays small
// (a hit's eight headers fit Go's small map), and without the clone of one
// more header when the status is written. TestReplyLength holds the
// servers to it.
const autoLengthMax = 2048

// setReplyHeaders sets the headers of a 200 answer: the gateway's
// (provider, model, attempts; see setHeaders) and the answer's, for a body
// its type and, from autoLengthMax bytes, its length (length >= 0), for a
// stream SSE's type, Cache-Control (no-transform keeps compressing
// middleware such as encode away from the stream) and X-Accel-Buffering.
// Every name is canonical, so the values are assigned, with two
// allocations in all: one string for the numbers and one slice backing
// every value.
func setReplyHeaders(h http.Header, info *Info, length int) {
	var buf [48]byte
	b := buf[:0]
	if info.Attempts > 0 {
		b = strconv.AppendInt(b, int64(info.Attempts), 10)
	}
	na := len(b)
	if length >= autoLengthMax {
		b = strconv.AppendInt(b, int64(length), 10)
	}
	nums := string(b)
	vals := make([]string, 0, 6)
	set := func(name, v string) {
		vals = append(vals, v)
		h[name] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if info.Provider != "" {
		set(HeaderProvider, info.Provider)
		set(HeaderModel, info.UpstreamModel)
	}
	if info.Attempts > 0 {
		set(HeaderAttempts, nums[:na])
	}
	if length >= 0 {
		set("Content-Type", "application/json")
		if length >= autoLengthMax {
			set("Content-Length", nums[na:])
		}
		return
	}
	set("Content-Type", "text/event-stream; charset=utf-8")
	set("Cache-Control", "no-cache, no-transform")
	set("X-Accel-Buffering", "no")
}
