package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
)

// otlpReceiver is an OTLP/HTTP trace receiver: it decodes the protobuf
// export requests a collector would get.
type otlpReceiver struct {
	URL string

	mu       sync.Mutex
	spans    []*tracepb.Span
	services []string // service.name of each span's resource
	scopes   []string
}

func startOTLP(t *testing.T) *otlpReceiver {
	t.Helper()
	rc := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "unexpected "+r.URL.Path+" "+r.Header.Get("Content-Type"), http.StatusBadRequest)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		for _, rs := range req.ResourceSpans {
			svc := attrOf(rs.GetResource().GetAttributes(), "service.name").GetStringValue()
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					rc.spans = append(rc.spans, s)
					rc.services = append(rc.services, svc)
					rc.scopes = append(rc.scopes, ss.GetScope().GetName())
				}
			}
		}
		rc.mu.Unlock()
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	rc.URL = srv.URL
	return rc
}

// trace returns the spans of traceID (hex) once want of them arrived.
func (rc *otlpReceiver) trace(t *testing.T, traceID string, want int) []*tracepb.Span {
	t.Helper()
	var got []*tracepb.Span
	eventually(t, 30*time.Second, func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		got = got[:0]
		for _, s := range rc.spans {
			if hex.EncodeToString(s.TraceId) == traceID {
				got = append(got, s)
			}
		}
		return len(got) >= want
	}, "trace %s: fewer than %d spans arrived", traceID, want)
	return got
}

func (rc *otlpReceiver) service(s *tracepb.Span) string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for i, x := range rc.spans {
		if x == s {
			return rc.services[i]
		}
	}
	return ""
}

func attrOf(kvs []*commonpb.KeyValue, key string) *commonpb.AnyValue {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value
		}
	}
	return nil
}

func spanNamed(t *testing.T, spans []*tracepb.Span, name string) *tracepb.Span {
	t.Helper()
	for _, s := range spans {
		if s.Name == name {
			return s
		}
	}
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
	}
	t.Fatalf("no span %q among %v", name, names)
	return nil
}

const telemetryCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider a {
			base_url {{.A}}/v1
			api_key upstream-secret-telemetry
		}
		model demo {
			target a fake-model
		}
		key team {
			secret gateway-secret-telemetry
			rpm 1000
		}
		telemetry {
			otlp {{.OTLP}} http
			service_name e2e-gateway
			{{.Capture}}
		}
	}
}
:{{.Port}} {
	ai_gateway
}
`

// upstreamHeaders records the headers of every request the upstream got.
type upstreamHeaders struct {
	mu sync.Mutex
	h  []http.Header
}

func (u *upstreamHeaders) last() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.h) == 0 {
		return nil
	}
	return u.h[len(u.h)-1]
}

func startRecordingFake(t *testing.T) (string, *upstreamHeaders) {
	t.Helper()
	rec := &upstreamHeaders{}
	fake := fakellm.New(fakellm.Options{Chunks: 4})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.h = append(rec.h, r.Header.Clone())
		rec.mu.Unlock()
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, rec
}

// TestTelemetryOTLP drives a running Caddy exporting to an OTLP/HTTP
// receiver: the client's traceparent is continued, the upstream gets the
// gateway's, the span tree and GenAI attributes arrive as protobuf, and no
// prompt, completion or secret is in them unless capture is on.
func TestTelemetryOTLP(t *testing.T) {
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	rc := startOTLP(t)
	upURL, up := startRecordingFake(t)
	g := startGateway(t, telemetryCaddyfile, map[string]any{"A": upURL, "OTLP": rc.URL, "Capture": ""})
	cl := g.client(option.WithAPIKey("gateway-secret-telemetry"))

	const tid = "0af7651916cd43dd8448eb211c80319c"
	_, err := cl.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:     "demo",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("a private prompt")},
		MaxTokens: openai.Int(64),
	}, option.WithHeader("traceparent", "00-"+tid+"-b7ad6b7169203331-01"))
	if err != nil {
		t.Fatal(err)
	}
	spans := rc.trace(t, tid, 3)
	root := spanNamed(t, spans, "ai_gateway chat")
	if hex.EncodeToString(root.ParentSpanId) != "b7ad6b7169203331" || root.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Fatalf("request span parent %x kind %v", root.ParentSpanId, root.Kind)
	}
	if svc := rc.service(root); svc != "e2e-gateway" {
		t.Fatalf("service.name %q", svc)
	}
	// One span for the key check and the limits: it begins with the
	// request span, at the key check.
	adm := spanNamed(t, spans, "admission")
	if adm.StartTimeUnixNano != root.StartTimeUnixNano || adm.EndTimeUnixNano > root.EndTimeUnixNano || adm.EndTimeUnixNano < adm.StartTimeUnixNano {
		t.Fatalf("admission span %d–%d, request span %d–%d", adm.StartTimeUnixNano, adm.EndTimeUnixNano, root.StartTimeUnixNano, root.EndTimeUnixNano)
	}
	if len(spans) != 3 {
		t.Fatalf("%d spans, want the request, admission and attempt spans", len(spans))
	}
	call := spanNamed(t, spans, "chat fake-model")
	if !bytes.Equal(adm.ParentSpanId, root.SpanId) || !bytes.Equal(call.ParentSpanId, root.SpanId) || call.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Fatalf("tree: admission parent %x, call parent %x kind %v, root %x", adm.ParentSpanId, call.ParentSpanId, call.Kind, root.SpanId)
	}
	for key, want := range map[string]string{
		"gen_ai.operation.name": "chat",
		"gen_ai.provider.name":  "openai",
		"gen_ai.request.model":  "fake-model",
		"gen_ai.response.model": "fake-model",
		"server.address":        "127.0.0.1",
	} {
		if got := attrOf(call.Attributes, key).GetStringValue(); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	if attrOf(call.Attributes, "gen_ai.request.max_tokens").GetIntValue() != 64 ||
		attrOf(call.Attributes, "gen_ai.usage.output_tokens").GetIntValue() == 0 ||
		attrOf(call.Attributes, "gen_ai.usage.input_tokens").GetIntValue() == 0 ||
		!strings.HasPrefix(attrOf(call.Attributes, "gen_ai.response.id").GetStringValue(), "chatcmpl-") ||
		attrOf(call.Attributes, "gen_ai.response.finish_reasons").GetArrayValue() == nil {
		t.Errorf("client span attributes: %v", call.Attributes)
	}
	if attrOf(root.Attributes, "ai_gateway.key").GetStringValue() != "team" {
		t.Errorf("key name missing on the request span: %v", root.Attributes)
	}
	// The upstream continues the gateway's client span.
	if got, want := up.last().Get("Traceparent"), "00-"+tid+"-"+hex.EncodeToString(call.SpanId)+"-01"; got != want {
		t.Errorf("upstream traceparent %q, want %q", got, want)
	}
	checkNoContent(t, rc, "a private prompt")

	// A stream: its attempt span lasts to the stream's end and carries the
	// stream's usage.
	const tid2 = "1af7651916cd43dd8448eb211c80319d"
	st := cl.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model:    "demo",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("another private prompt")},
	}, option.WithHeader("traceparent", "00-"+tid2+"-b7ad6b7169203332-01"))
	for st.Next() {
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	spans = rc.trace(t, tid2, 3)
	call = spanNamed(t, spans, "chat fake-model")
	if !attrOf(call.Attributes, "gen_ai.request.stream").GetBoolValue() || attrOf(call.Attributes, "gen_ai.usage.output_tokens").GetIntValue() != 4 {
		t.Errorf("stream client span: %v", call.Attributes)
	}
	checkNoContent(t, rc, "another private prompt")
}

// checkNoContent fails when any exported span holds text, a message
// attribute or a secret.
func checkNoContent(t *testing.T, rc *otlpReceiver, text string) {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, s := range rc.spans {
		for _, kv := range s.Attributes {
			v := kv.Value.String()
			if kv.Key == "gen_ai.input.messages" || kv.Key == "gen_ai.output.messages" ||
				strings.Contains(v, text) || strings.Contains(v, "secret-telemetry") || strings.Contains(v, "Hello from") {
				t.Fatalf("span %s holds %s = %s", s.Name, kv.Key, v)
			}
		}
	}
}

// TestTelemetryCaptureContent: with capture_content, or with
// OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true, the prompt and
// the completion are on the client span.
func TestTelemetryCaptureContent(t *testing.T) {
	t.Run("capture_content", func(t *testing.T) { testCapture(t, "capture_content", "2af7651916cd43dd8448eb211c80319e") })
	t.Run("env", func(t *testing.T) {
		t.Setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
		testCapture(t, "", "2af7651916cd43dd8448eb211c80319f")
	})
}

func testCapture(t *testing.T, directive, tid string) {
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	rc := startOTLP(t)
	upURL, _ := startRecordingFake(t)
	g := startGateway(t, telemetryCaddyfile, map[string]any{"A": upURL, "OTLP": rc.URL, "Capture": directive})
	cl := g.client(option.WithAPIKey("gateway-secret-telemetry"))
	if _, err := cl.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "demo",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("a captured prompt")},
	}, option.WithHeader("traceparent", "00-"+tid+"-b7ad6b7169203333-01")); err != nil {
		t.Fatal(err)
	}
	call := spanNamed(t, rc.trace(t, tid, 3), "chat fake-model")
	in := attrOf(call.Attributes, "gen_ai.input.messages").GetStringValue()
	out := attrOf(call.Attributes, "gen_ai.output.messages").GetStringValue()
	if !strings.Contains(in, "a captured prompt") || !strings.Contains(out, "Hello from") {
		t.Fatalf("captured content: input %q output %q", in, out)
	}
}

const caddyTracingCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider a {
			base_url {{.A}}/v1
		}
		model demo {
			target a fake-model
		}
	}
}
:{{.Port}} {
	tracing {
		span caddy_server
	}
	ai_gateway
}
`

// TestTelemetryCaddyTracing: under Caddy's tracing directive the gateway's
// spans are children of Caddy's server span, exported by Caddy's exporter
// (configured by the standard variables only).
func TestTelemetryCaddyTracing(t *testing.T) {
	rc := startOTLP(t)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", rc.URL+"/v1/traces")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
	upURL, up := startRecordingFake(t)
	g := startGateway(t, caddyTracingCaddyfile, map[string]any{"A": upURL})
	cl := g.client()
	const tid = "3af7651916cd43dd8448eb211c80319f"
	if _, err := cl.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "demo",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	}, option.WithHeader("traceparent", "00-"+tid+"-b7ad6b7169203334-01")); err != nil {
		t.Fatal(err)
	}
	spans := rc.trace(t, tid, 3)
	server := spanNamed(t, spans, "caddy_server")
	root := spanNamed(t, spans, "ai_gateway chat")
	call := spanNamed(t, spans, "chat fake-model")
	if !bytes.Equal(root.ParentSpanId, server.SpanId) || root.Kind != tracepb.Span_SPAN_KIND_INTERNAL {
		t.Fatalf("gateway span parent %x kind %v, Caddy's span %x", root.ParentSpanId, root.Kind, server.SpanId)
	}
	if !bytes.Equal(call.ParentSpanId, root.SpanId) {
		t.Fatalf("client span parent %x, gateway span %x", call.ParentSpanId, root.SpanId)
	}
	if got, want := up.last().Get("Traceparent"), "00-"+tid+"-"+hex.EncodeToString(call.SpanId)+"-01"; got != want {
		t.Errorf("upstream traceparent %q, want %q", got, want)
	}
}

// TestTelemetryAndUsageSurviveReload: after a config reload the shared
// exporter still exports and the in-process usage rollups keep what was
// booked before.
func TestTelemetryAndUsageSurviveReload(t *testing.T) {
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	rc := startOTLP(t)
	upURL, _ := startRecordingFake(t)
	g := startGateway(t, telemetryCaddyfile, map[string]any{"A": upURL, "OTLP": rc.URL, "Capture": ""})
	cl := g.client(option.WithAPIKey("gateway-secret-telemetry"))
	send := func(tid string) {
		t.Helper()
		if _, err := cl.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Model:    "demo",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		}, option.WithHeader("traceparent", "00-"+tid+"-b7ad6b7169203335-01")); err != nil {
			t.Fatal(err)
		}
	}
	send("4af7651916cd43dd8448eb211c803190")
	rc.trace(t, "4af7651916cd43dd8448eb211c803190", 3)

	g.reload(t)
	send("5af7651916cd43dd8448eb211c803191")
	rc.trace(t, "5af7651916cd43dd8448eb211c803191", 3)
	eventually(t, 10*time.Second, func() bool {
		return strings.Contains(adminGet(t, g, "/ai_gateway/usage?group_by=key"), `"total":{"start":`) &&
			strings.Contains(adminGet(t, g, "/ai_gateway/usage"), `"requests":2`)
	}, "usage after the reload: %s", adminGet(t, g, "/ai_gateway/usage"))
}
