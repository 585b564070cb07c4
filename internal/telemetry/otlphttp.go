package telemetry

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// httpExporter exports spans over OTLP/HTTP, in protobuf encoded by wire
// into one reused buffer. It is the gateway's exporter for the http
// protocol: OpenTelemetry's otlptracehttp builds a generated message per
// span, attribute and value and marshals them by reflection, several
// times the CPU of the spans themselves. It reads the same variables
// (endpoint, headers, timeout, compression); a configuration with a TLS
// certificate variable uses otlptracehttp instead (see newHTTPExporter).
type httpExporter struct {
	url     string
	headers http.Header
	gzip    bool
	timeout time.Duration
	client  *http.Client

	mu      sync.Mutex // one export at a time; guards what follows
	w       wire
	zbuf    bytes.Buffer
	zw      *gzip.Writer
	stopped atomic.Bool
}

var _ sdktrace.SpanExporter = (*httpExporter)(nil)

// tlsVariables name client TLS material; with one set, otlptracehttp
// (which loads it) exports.
var tlsVariables = []string{
	"OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
	"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
	"OTEL_EXPORTER_OTLP_CLIENT_KEY", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
}

// newHTTPExporter returns the exporter to endpoint (a full URL; empty: the
// variables', else http://localhost:4318/v1/traces), or nil when a TLS
// variable asks for what only otlptracehttp does.
func newHTTPExporter(endpoint string) (*httpExporter, error) {
	for _, v := range tlsVariables {
		if os.Getenv(v) != "" {
			return nil, nil
		}
	}
	if endpoint == "" {
		endpoint = os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	}
	if endpoint == "" {
		if base := os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); base != "" {
			endpoint = strings.TrimSuffix(base, "/") + "/v1/traces"
		}
	}
	if endpoint == "" {
		endpoint = "http://localhost:4318/v1/traces"
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("OTLP/HTTP endpoint %q is not an http(s) URL", endpoint)
	}
	e := &httpExporter{url: u.String(), headers: http.Header{}, timeout: 10 * time.Second}
	e.headers.Set("Content-Type", "application/x-protobuf")
	e.headers.Set("User-Agent", "caddy-ai-gateway")
	for _, v := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"} {
		if err := parseHeaders(e.headers, os.Getenv(v)); err != nil {
			return nil, fmt.Errorf("%s: %v", v, err)
		}
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"} {
		if s := os.Getenv(v); s != "" {
			ms, err := strconv.Atoi(s)
			if err != nil || ms <= 0 {
				return nil, fmt.Errorf("%s: %q is not a positive number of milliseconds", v, s)
			}
			e.timeout = time.Duration(ms) * time.Millisecond
		}
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"} {
		switch s := strings.ToLower(os.Getenv(v)); s {
		case "":
		case "gzip":
			e.gzip = true
		case "none":
			e.gzip = false
		default:
			return nil, fmt.Errorf("%s: unknown compression %q (gzip or none)", v, s)
		}
	}
	if e.gzip {
		e.headers.Set("Content-Encoding", "gzip")
	}
	e.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	return e, nil
}

// parseHeaders adds the k=v,k2=v2 list of an OTEL_EXPORTER_OTLP_HEADERS
// variable (values URL-encoded) to h.
func parseHeaders(h http.Header, list string) error {
	for kv := range strings.SplitSeq(list, ",") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return fmt.Errorf("header %q is not key=value", kv)
		}
		v, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("header %q: %v", k, err)
		}
		h.Set(k, v)
	}
	return nil
}

// ExportSpans implements sdktrace.SpanExporter: one POST, retried with a
// growing pause while the collector answers 429, 502, 503 or 504 (or
// cannot be reached), within the timeout.
func (e *httpExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if e.stopped.Load() || len(spans) == 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sendLocked(ctx, e.w.encode(spans))
}

// sendLocked posts body (an encoded export request), compressed when
// configured, retrying as ExportSpans says. e.mu must be held.
func (e *httpExporter) sendLocked(ctx context.Context, body []byte) error {
	if e.gzip {
		e.zbuf.Reset()
		if e.zw == nil {
			e.zw = gzip.NewWriter(&e.zbuf)
		} else {
			e.zw.Reset(&e.zbuf)
		}
		_, _ = e.zw.Write(body)
		_ = e.zw.Close()
		body = e.zbuf.Bytes()
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	pause := 250 * time.Millisecond
	for {
		retry, err := e.post(ctx, body)
		if err == nil || !retry {
			return err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("OTLP/HTTP export: %w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
		pause = min(2*pause, 5*time.Second)
	}
}

// post sends body once; retry tells whether a failure may pass.
func (e *httpExporter) post(ctx context.Context, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header = e.headers.Clone()
	resp, err := e.client.Do(req)
	if err != nil {
		return ctx.Err() == nil, fmt.Errorf("OTLP/HTTP export: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // a partial-success report, kept from no one
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusBadGateway,
		resp.StatusCode == http.StatusServiceUnavailable, resp.StatusCode == http.StatusGatewayTimeout:
		return true, fmt.Errorf("OTLP/HTTP export: collector answered %s", resp.Status)
	}
	return false, fmt.Errorf("OTLP/HTTP export: collector answered %s", resp.Status)
}

// Shutdown implements sdktrace.SpanExporter.
func (e *httpExporter) Shutdown(ctx context.Context) error {
	if e.stopped.Swap(true) {
		return nil
	}
	e.mu.Lock() // an export under way ends first
	defer e.mu.Unlock()
	e.client.CloseIdleConnections()
	return nil
}
