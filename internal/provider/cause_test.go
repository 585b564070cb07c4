package provider

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestTransportErrorCause: a failed connection's error carries, for the
// log, what failed below HTTP, without the request's method and URL, bounded
// and valid UTF-8; its client rendering says none of it.
func TestTransportErrorCause(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	h := NewHTTP("p", Timeouts{})
	defer h.Close()
	x := h.Begin(context.Background())
	req, _ := http.NewRequestWithContext(x.Context(), http.MethodPost, "http://"+addr+"/v1/chat/completions?secret=q", strings.NewReader("{}"))
	err = x.Send(req, nil)
	x.Close()
	var pe *Error
	if !errors.As(err, &pe) || pe.Kind != KindConnect {
		t.Fatalf("error %v", err)
	}
	if !strings.Contains(pe.Cause, "connection refused") || !strings.Contains(pe.Cause, addr) ||
		strings.Contains(pe.Cause, "/v1/chat/completions") || strings.Contains(pe.Cause, "secret=q") || strings.Contains(pe.Cause, "Post") {
		t.Fatalf("cause %q", pe.Cause)
	}
	if ce := pe.ClientError(); strings.Contains(ce.Message, addr) || strings.Contains(pe.Error(), "refused") {
		t.Fatalf("the cause reached the client's message %q or Error() %q", ce.Message, pe.Error())
	}

	long := causeOf(errors.New(strings.Repeat("é", 300) + "\xff"))
	if len(long) > maxCause+len("…") || !utf8.ValidString(long) || !strings.HasSuffix(long, "…") {
		t.Fatalf("long cause: %d bytes, valid %v", len(long), utf8.ValidString(long))
	}
	if got := causeOf(errors.New("a\xffb")); got != "a\uFFFDb" {
		t.Fatalf("invalid UTF-8: %q", got)
	}
}
