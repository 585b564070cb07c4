package openai

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

type sink []string

func (s *sink) Event(name, data []byte) { *s = append(*s, string(name)+"|"+string(data)) }

func parse(t *testing.T, op openai.Op, body string, h http.Header) *dialect.Request {
	t.Helper()
	var r dialect.Request
	if oe := (Dialect{}).Parse(&r, op, []byte(body), h, 0); oe != nil {
		t.Fatal(oe)
	}
	return &r
}

func TestStream(t *testing.T) {
	for _, clientUsage := range []bool{false, true} {
		body := `{"model":"m","messages":[],"stream":true}`
		if clientUsage {
			body = `{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}`
		}
		r := parse(t, openai.OpChat, body, http.Header{})
		w := Dialect{}.Stream(r, provider.FormatOpenAI)
		var out sink
		w.Event(&dialect.Event{Event: sse.Event{Data: []byte(`{"a":1}`)}}, &out)
		w.Event(&dialect.Event{Event: sse.Event{Data: []byte(`{"choices":[],"usage":{}}`)}, UsageOnly: true}, &out)
		w.End(&out)
		want := `|{"a":1} |[DONE]`
		if clientUsage {
			want = `|{"a":1} |{"choices":[],"usage":{}} |[DONE]`
		}
		if got := strings.Join(out, " "); got != want {
			t.Errorf("clientUsage %v: %q, want %q", clientUsage, got, want)
		}
	}
	// Responses streams are named and end without [DONE]; errors are an
	// "error" event there, a data-only envelope in Chat.
	e := &openai.Error{Status: 502, Message: "x", Type: "upstream_error", Code: "upstream_stream_error"}
	var out sink
	w := Dialect{}.Stream(parse(t, openai.OpResponses, `{"model":"m","input":"hi","stream":true}`, nil), provider.FormatOpenAI)
	w.End(&out)
	w.Fail(e, &out)
	if len(out) != 1 || !strings.HasPrefix(out[0], "error|{\"error\"") {
		t.Errorf("responses: %q", out)
	}
	out = nil
	Dialect{}.Stream(parse(t, openai.OpChat, `{"model":"m","messages":[]}`, nil), provider.FormatOpenAI).Fail(e, &out)
	if len(out) != 1 || !strings.HasPrefix(out[0], "|{\"error\"") {
		t.Errorf("chat: %q", out)
	}
}

func TestParseKeepsTheBetaHeader(t *testing.T) {
	h := http.Header{}
	h.Set("OpenAI-Beta", "assistants=v2")
	h.Set("Authorization", "Bearer x")
	r := parse(t, openai.OpChat, `{"model":"m","messages":[]}`, h)
	if len(r.Header) != 1 || r.Header.Get("OpenAI-Beta") != "assistants=v2" || r.Format != provider.FormatOpenAI || r.Native != nil {
		t.Fatalf("%+v", r)
	}
	if r := parse(t, openai.OpChat, `{"model":"m","messages":[]}`, http.Header{}); r.Header != nil {
		t.Fatal("no protocol header, no map")
	}
}

func TestErrorsAndBodies(t *testing.T) {
	w := httptest.NewRecorder()
	Dialect{}.WriteError(w, openai.BadRequest("no", "model", "invalid_value"))
	if w.Code != 400 || !strings.Contains(w.Body.String(), `"code":"invalid_value"`) {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if b, oe := (Dialect{}).Body(nil, []byte(`{}`), provider.FormatOpenAI); oe != nil || string(b) != `{}` {
		t.Fatal("OpenAI bodies pass")
	}
	if _, oe := (Dialect{}).Body(nil, []byte(`{}`), provider.FormatAnthropic); oe == nil || oe.Status != 502 {
		t.Fatal("another format cannot reach an OpenAI client")
	}
}
