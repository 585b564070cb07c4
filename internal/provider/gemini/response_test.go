package gemini

import (
	"net/http"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// A generateContent answer as the reference documents it (pretty-printed
// like Google's servers answer), with a thought part to skip.
const textAnswer = `{
  "candidates": [
    {
      "content": {
        "parts": [
          {"text": "Let me think.", "thought": true},
          {"text": "Hello"},
          {"text": ", \"world\"\n"}
        ],
        "role": "model"
      },
      "finishReason": "STOP",
      "index": 0
    }
  ],
  "usageMetadata": {
    "promptTokenCount": 12,
    "candidatesTokenCount": 5,
    "totalTokenCount": 40,
    "cachedContentTokenCount": 4,
    "thoughtsTokenCount": 23,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}]
  },
  "modelVersion": "models/gemini-2.5-flash",
  "responseId": "abc_123"
}`

func TestTranslateChat(t *testing.T) {
	got, err := translateChat([]byte(textAnswer), "gemini-flash", 1700000000, 1)
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, got, `{"id":"chatcmpl-abc_123","object":"chat.completion","created":1700000000,"model":"gemini-2.5-flash",
		"choices":[{"index":0,"message":{"role":"assistant","content":"Hello, \"world\"\n","refusal":null},"logprobs":null,"finish_reason":"stop"}],
		"usage":{"prompt_tokens":12,"completion_tokens":28,"total_tokens":40,
			"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":23}}}`)
	if u := openai.UsageOf(got); u.InputTokens != 12 || u.OutputTokens != 28 || u.CachedTokens != 4 {
		t.Errorf("usage as the gateway reads it: %+v", u)
	}
}

func TestTranslateChatToolCalls(t *testing.T) {
	const in = `{"candidates":[{"content":{"role":"model","parts":[
		{"text":"Checking."},
		{"functionCall":{"name":"get_weather","args":{ "city" : "Paris", "days": [1, 2] }},"thoughtSignature":"c2ln"},
		{"functionCall":{"id":"fc_7","name":"get_time","args":{}}}]},"finishReason":"STOP","index":0}],
		"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":4,"totalTokenCount":7}}`
	got, err := translateChat([]byte(in), "gemini-x", 5, 42)
	if err != nil {
		t.Fatal(err)
	}
	r := gjson.ParseBytes(got)
	if id := r.Get("id").Str; len(id) != len("chatcmpl-")+24 {
		t.Errorf("generated id %q", id)
	}
	if r.Get("model").Str != "gemini-x" {
		t.Errorf("model %q", r.Get("model").Str)
	}
	c := r.Get("choices.0")
	if c.Get("finish_reason").Str != "tool_calls" || c.Get("message.content").Str != "Checking." {
		t.Errorf("choice: %s", c.Raw)
	}
	tc := c.Get("message.tool_calls")
	if n := len(tc.Array()); n != 2 {
		t.Fatalf("%d tool calls: %s", n, tc.Raw)
	}
	if id := tc.Get("0.id").Str; len(id) != len("call_")+24 || id[:5] != "call_" {
		t.Errorf("generated call id %q", id)
	}
	if tc.Get("0.type").Str != "function" || tc.Get("0.function.name").Str != "get_weather" ||
		tc.Get("0.function.arguments").Str != `{"city":"Paris","days":[1,2]}` ||
		tc.Get("0.extra_content.google.thought_signature").Str != "c2ln" {
		t.Errorf("call 0: %s", tc.Get("0").Raw)
	}
	if tc.Get("1.id").Str != "fc_7" || tc.Get("1.function.arguments").Str != "{}" || tc.Get("1.extra_content").Exists() {
		t.Errorf("call 1: %s", tc.Get("1").Raw)
	}

	// only calls: content is null
	got, _ = translateChat([]byte(`{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f"}}]},"finishReason":"STOP"}]}`), "m", 1, 1)
	if c := gjson.GetBytes(got, "choices.0"); c.Get("message.content").Type != gjson.Null || c.Get("message.tool_calls.0.function.arguments").Str != "{}" {
		t.Errorf("calls only: %s", got)
	}
}

func TestFinishReasons(t *testing.T) {
	cases := map[string]string{
		"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
		"BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
		"IMAGE_SAFETY": "content_filter", "OTHER": "stop", "LANGUAGE": "stop", "MALFORMED_FUNCTION_CALL": "stop",
		"FINISH_REASON_UNSPECIFIED": "stop", "SOMETHING_NEW": "stop",
	}
	for in, want := range cases {
		body := `{"candidates":[{"content":{"parts":[{"text":"x"}],"role":"model"},"finishReason":"` + in + `","index":0}]}`
		got, err := translateChat([]byte(body), "m", 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		if f := gjson.GetBytes(got, "choices.0.finish_reason").Str; f != want {
			t.Errorf("%s → %s, want %s", in, f, want)
		}
	}
	if finishReason("STOP", true) != "tool_calls" || finishReason("MAX_TOKENS", true) != "length" {
		t.Error("tool call finish reasons")
	}
}

func TestTranslateChatSpecial(t *testing.T) {
	// A blocked prompt: no candidates, promptFeedback.blockReason.
	blocked := `{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[]},"usageMetadata":{"promptTokenCount":9,"totalTokenCount":9},"modelVersion":"gemini-2.0-flash"}`
	got, err := translateChat([]byte(blocked), "m", 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	r := gjson.ParseBytes(got)
	if r.Get("choices.#").Int() != 1 || r.Get("choices.0.finish_reason").Str != "content_filter" ||
		r.Get("choices.0.message.content").Str != "" || r.Get("choices.0.message.content").Type != gjson.String ||
		r.Get("usage.prompt_tokens").Int() != 9 || r.Get("usage.completion_tokens").Int() != 0 {
		t.Errorf("blocked: %s", got)
	}

	// several candidates keep their index
	multi := `{"candidates":[{"content":{"parts":[{"text":"a"}]},"finishReason":"STOP","index":0},
		{"content":{"parts":[{"text":"b"}]},"finishReason":"MAX_TOKENS","index":1}]}`
	got, _ = translateChat([]byte(multi), "m", 1, 1)
	r = gjson.ParseBytes(got)
	if r.Get("choices.1.index").Int() != 1 || r.Get("choices.1.message.content").Str != "b" || r.Get("choices.1.finish_reason").Str != "length" {
		t.Errorf("multi: %s", got)
	}
	if r.Get("usage.total_tokens").Int() != 0 {
		t.Errorf("usage without metadata: %s", r.Get("usage").Raw)
	}

	// invalid UTF-8 and U+2028 in text come out as valid, JS-safe JSON
	odd := "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\xffb\u2028c\"}]},\"finishReason\":\"STOP\"}]}"
	got, _ = translateChat([]byte(odd), "m", 1, 1)
	if c := gjson.GetBytes(got, "choices.0.message.content"); c.Str != "a\ufffdb\u2028c" {
		t.Errorf("odd text: %s", got)
	}

	for _, bad := range []string{`not json`, `[1,2]`, `{"candidates":`} {
		if _, err := translateChat([]byte(bad), "m", 1, 1); err == nil || err.Kind != provider.KindProtocol {
			t.Errorf("%q: %v", bad, err)
		}
	}
	_, err = translateChat([]byte(`{"error":{"code":500,"message":"boom","status":"INTERNAL"}}`), "m", 1, 1)
	if err == nil || err.Status != 500 || err.Type != openai.TypeServer || err.Message != "boom" {
		t.Errorf("error object: %+v", err)
	}
}

func TestParseError(t *testing.T) {
	const exhausted = `{
  "error": {
    "code": 429,
    "message": "You exceeded your current quota.",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
      {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "m"}]},
      {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "22.5s"}
    ]
  }
}`
	e := ParseError(429, []byte(exhausted))
	if e.Message != "You exceeded your current quota." || e.Type != openai.TypeRateLimit || e.Code != "resource_exhausted" ||
		e.RetryAfter != 22500*time.Millisecond || e.Status != 429 {
		t.Errorf("429: %+v", *e)
	}
	e.Kind = provider.KindStatus
	if !e.Retryable() {
		t.Error("429 not retryable")
	}
	if ce := e.ClientError(); ce.Status != 429 || ce.RetryAfter != 23 {
		t.Errorf("client error: %+v", *ce)
	}

	cases := []struct {
		status       int
		body         string
		typ, code    string
		keyInvalid   bool
		retryable    bool
		wantMessage  string
		wantFallback bool
	}{
		{400, `{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}`, "invalid_request_error", "invalid_argument", false, false, "bad", false},
		{400, `{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}`,
			"invalid_request_error", "invalid_argument", true, false, "API key not valid.", false},
		{401, `{"error":{"code":401,"message":"x","status":"UNAUTHENTICATED"}}`, "authentication_error", "unauthenticated", false, false, "x", false},
		{403, `{"error":{"code":403,"message":"x","status":"PERMISSION_DENIED"}}`, "permission_error", "permission_denied", false, false, "x", false},
		{404, `[{"error":{"code":404,"message":"models/x is not found","status":"NOT_FOUND"}}]`, "not_found_error", "not_found", false, false, "models/x is not found", false},
		{500, `{"error":{"code":500,"message":"x","status":"INTERNAL"}}`, "server_error", "internal", false, true, "x", false},
		{503, `{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}`, "server_error", "unavailable", false, true, "The model is overloaded.", false},
		{504, `{"error":{"code":504,"message":"x","status":"DEADLINE_EXCEEDED"}}`, "timeout_error", "deadline_exceeded", false, true, "x", false},
		{502, `<html>bad gateway</html>`, "", "", false, true, "", false},
		{400, `{"error":{"message":"openai shaped","type":"invalid_request_error","code":"x"}}`, "invalid_request_error", "x", false, false, "openai shaped", true},
	}
	for _, c := range cases {
		e, _, keyInvalid := parseError(c.status, []byte(c.body))
		e.Kind = provider.KindStatus
		if e.Type != c.typ || e.Code != c.code || keyInvalid != c.keyInvalid || e.Retryable() != c.retryable || e.Message != c.wantMessage {
			t.Errorf("%d %s: %+v keyInvalid=%v", c.status, c.body, *e, keyInvalid)
		}
	}
	if e := ParseError(503, []byte(`{"error":{"code":503,"status":"UNAVAILABLE","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"soon"}]}}`)); e.RetryAfter != 0 {
		t.Errorf("bad delay: %v", e.RetryAfter)
	}
	if statusOf("RESOURCE_EXHAUSTED") != http.StatusTooManyRequests || statusOf("WHATEVER") != http.StatusBadGateway {
		t.Error("statusOf")
	}
}
