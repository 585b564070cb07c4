package cache

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
)

const baseRequest = `{
	"model": "gpt-x",
	"messages": [
		{"role": "system", "content": "You are terse."},
		{"role": "user", "content": [
			{"type": "text", "text": "What is in this image?"},
			{"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}}
		]}
	],
	"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}}],
	"tool_choice": "auto",
	"response_format": {"type": "json_object"},
	"temperature": 0.5,
	"top_p": 1,
	"n": 1,
	"stop": ["END"],
	"seed": 1234567890123456789,
	"logit_bias": {"50256": -100},
	"presence_penalty": 0.25,
	"frequency_penalty": 0,
	"max_tokens": 100,
	"max_completion_tokens": 100,
	"reasoning_effort": "low",
	"logprobs": true,
	"top_logprobs": 2,
	"modalities": ["text"],
	"stream": false,
	"user": "u1"
}`

func keyOf(t testing.TB, body string, ns, endpoint string, route []string, extra ...string) Key {
	t.Helper()
	if !json.Valid([]byte(body)) {
		t.Fatalf("invalid JSON: %s", body)
	}
	return KeyOf(ns, endpoint, route, DigestRequest([]byte(body), nil, extra...))
}

var baseRoute = []string{"gpt-*", "openai\x00gpt-x"}

func set(t testing.TB, body, path string, v any) string {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(path, ".")
	var cur any = m
	for i, p := range parts {
		last := i == len(parts)-1
		switch c := cur.(type) {
		case map[string]any:
			if last {
				c[p] = v
			} else {
				cur = c[p]
			}
		case []any:
			n, _ := strconv.Atoi(p)
			if last {
				c[n] = v
			} else {
				cur = c[n]
			}
		}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// TestKeyCompleteness: every field that changes the answer, changed alone,
// changes the key; fields that do not (stream, user) leave it.
func TestKeyCompleteness(t *testing.T) {
	base := keyOf(t, baseRequest, "key:a", "openai:chat/completions", baseRoute)
	mutations := map[string]string{
		"messages content":      set(t, baseRequest, "messages.0.content", "You are verbose."),
		"message role":          set(t, baseRequest, "messages.0.role", "developer"),
		"content part text":     set(t, baseRequest, "messages.1.content.0.text", "What is in this picture?"),
		"image url":             set(t, baseRequest, "messages.1.content.1.image_url.url", "https://example.com/b.png"),
		"image detail":          set(t, baseRequest, "messages.1.content.1.image_url.detail", "high"),
		"tools":                 set(t, baseRequest, "tools.0.function.name", "g"),
		"tool parameters":       set(t, baseRequest, "tools.0.function.parameters.properties.a.type", "number"),
		"tool_choice":           set(t, baseRequest, "tool_choice", "required"),
		"response_format":       set(t, baseRequest, "response_format.type", "text"),
		"temperature":           set(t, baseRequest, "temperature", 0.7),
		"top_p":                 set(t, baseRequest, "top_p", 0.9),
		"n":                     set(t, baseRequest, "n", 2),
		"stop":                  set(t, baseRequest, "stop", []string{"STOP"}),
		"seed":                  set(t, baseRequest, "seed", json.Number("1234567890123456788")),
		"logit_bias":            set(t, baseRequest, "logit_bias", map[string]any{"50256": -99}),
		"presence_penalty":      set(t, baseRequest, "presence_penalty", 0.5),
		"frequency_penalty":     set(t, baseRequest, "frequency_penalty", 0.1),
		"max_tokens":            set(t, baseRequest, "max_tokens", 101),
		"max_completion_tokens": set(t, baseRequest, "max_completion_tokens", 99),
		"reasoning_effort":      set(t, baseRequest, "reasoning_effort", "high"),
		"logprobs":              set(t, baseRequest, "logprobs", false),
		"top_logprobs":          set(t, baseRequest, "top_logprobs", 3),
		"modalities":            set(t, baseRequest, "modalities", []string{"text", "audio"}),
		"new member":            set(t, baseRequest, "verbosity", "low"),
		"array order":           set(t, baseRequest, "modalities", []string{"audio", "text"}),
		"null vs absent":        set(t, baseRequest, "stop", nil),
		"string vs number":      set(t, baseRequest, "n", "1"),
	}
	seen := map[Key]string{base: "base"}
	for name, body := range mutations {
		k := keyOf(t, body, "key:a", "openai:chat/completions", baseRoute)
		if prev, dup := seen[k]; dup {
			t.Errorf("%s: same key as %s", name, prev)
		}
		seen[k] = name
	}
	others := map[string]Key{
		"namespace":      keyOf(t, baseRequest, "key:b", "openai:chat/completions", baseRoute),
		"endpoint":       keyOf(t, baseRequest, "key:a", "anthropic:chat/completions", baseRoute),
		"operation":      keyOf(t, baseRequest, "key:a", "openai:responses", baseRoute),
		"route":          keyOf(t, baseRequest, "key:a", "openai:chat/completions", []string{"gpt-x", "openai\x00gpt-x"}),
		"upstream model": keyOf(t, baseRequest, "key:a", "openai:chat/completions", []string{"gpt-*", "openai\x00gpt-y"}),
		"provider":       keyOf(t, baseRequest, "key:a", "openai:chat/completions", []string{"gpt-*", "azure\x00gpt-x"}),
		"rag version":    keyOf(t, baseRequest, "key:a", "openai:chat/completions", baseRoute, "rag:docs@7"),
	}
	for name, k := range others {
		if prev, dup := seen[k]; dup {
			t.Errorf("%s: same key as %s", name, prev)
		}
		seen[k] = name
	}
	hdr := http.Header{"Anthropic-Beta": {"x"}}
	if KeyOf("key:a", "openai:chat/completions", baseRoute, DigestRequest([]byte(baseRequest), hdr)) == base {
		t.Error("protocol header: same key")
	}
	for name, body := range map[string]string{
		"stream":         set(t, baseRequest, "stream", true),
		"stream_options": set(t, baseRequest, "stream_options", map[string]any{"include_usage": true}),
		"user":           set(t, baseRequest, "user", "u2"),
		"model":          set(t, baseRequest, "model", "gpt-x-alias"),
	} {
		if keyOf(t, body, "key:a", "openai:chat/completions", baseRoute) != base {
			t.Errorf("%s changed the key", name)
		}
	}
}

// reformat writes v as JSON with members in random order, random
// whitespace, numbers in another spelling and strings with escapes.
func reformat(r *rand.Rand, b *bytes.Buffer, v any) {
	ws := func() {
		for range r.IntN(3) {
			b.WriteByte(" \n\t\r"[r.IntN(4)])
		}
	}
	ws()
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			ws()
			writeString(r, b, k)
			ws()
			b.WriteByte(':')
			reformat(r, b, v[k])
		}
		ws()
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			reformat(r, b, e)
		}
		ws()
		b.WriteByte(']')
	case string:
		writeString(r, b, v)
	case json.Number:
		b.WriteString(respell(r, string(v)))
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case nil:
		b.WriteString("null")
	}
	ws()
}

func writeString(r *rand.Rand, b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		case c == '/' && r.IntN(2) == 0:
			b.WriteString(`\/`)
		case c < 0x80 && r.IntN(4) == 0:
			fmt.Fprintf(b, `\u%04x`, c)
		case c < 0x20:
			fmt.Fprintf(b, `\u%04x`, c)
		default:
			b.WriteRune(c)
		}
	}
	b.WriteByte('"')
}

// respell writes a number another way: 1 as 1.0, 1e0, 10e-1; 0.5 as 5e-1.
func respell(r *rand.Rand, n string) string {
	f, err := strconv.ParseFloat(n, 64)
	if err != nil || (len(n) > 15 && !strings.ContainsAny(n, ".eE")) {
		return n // a big integer keeps its digits
	}
	switch r.IntN(4) {
	case 0:
		return strconv.FormatFloat(f, 'e', -1, 64)
	case 1:
		if f == float64(int64(f)) {
			return strconv.FormatInt(int64(f), 10) + ".0"
		}
		return strconv.FormatFloat(f, 'f', -1, 64)
	case 2:
		return strconv.FormatFloat(f*10, 'g', -1, 64) + "e-1"
	}
	return n
}

// TestKeyCanonical: 1,000 reorderings and reformattings of one request
// have one key.
func TestKeyCanonical(t *testing.T) {
	var v any
	d := json.NewDecoder(strings.NewReader(baseRequest))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	want := keyOf(t, baseRequest, "key:a", "openai:chat/completions", baseRoute)
	r := rand.New(rand.NewPCG(1, 2))
	distinct := map[string]bool{}
	for i := range 1000 {
		var b bytes.Buffer
		reformat(r, &b, v)
		distinct[b.String()] = true
		if got := keyOf(t, b.String(), "key:a", "openai:chat/completions", baseRoute); got != want {
			t.Fatalf("variant %d has another key:\n%s", i, b.String())
		}
	}
	if len(distinct) < 990 {
		t.Fatalf("only %d distinct variants", len(distinct))
	}
}

// BenchmarkKey50Messages hashes a 50-message request.
func BenchmarkKey50Messages(b *testing.B) {
	var msgs []string
	for i := range 50 {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		msgs = append(msgs, fmt.Sprintf(`{"role":%q,"content":"Message number %d: %s"}`, role, i, strings.Repeat("lorem ipsum dolor sit amet ", 8)))
	}
	body := []byte(`{"model":"gpt-x","temperature":0.2,"max_tokens":256,"messages":[` + strings.Join(msgs, ",") + `]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		_ = KeyOf("key:a", "openai:chat/completions", baseRoute, DigestRequest(body, nil))
	}
}

// routeKey is KeyOf over routeParts, byte for byte (keys stored before
// stay valid).
func TestRouteKey(t *testing.T) {
	rt := &route.Route{Pattern: "gpt-*", Targets: []route.Target{{Provider: "a", Model: "m1"}, {Provider: "bb"}}}
	d := Digest{1, 2, 3}
	for _, model := range []string{"gpt-4o", "gpt-" + strings.Repeat("x", 200)} {
		if got, want := routeKey("key:k", "openai:chat/completions", rt, model, d), KeyOf("key:k", "openai:chat/completions", routeParts(rt, model), d); got != want {
			t.Fatalf("%s: %v != %v", model, got, want)
		}
	}
}

// canonicalDigest is DigestRequest without digestMemo: the canonical walk
// every time.
func canonicalDigest(body []byte, header http.Header, extra ...string) Digest {
	clear(digestMemo[:])
	return DigestRequest(body, header, extra...)
}

// A remembered digest is the canonical one, for a repeated body, header
// set and extras; bodies that differ only in spelling share the digest
// though their remembered inputs differ; and a slot taken by another input
// never answers for the one it replaced.
func TestDigestMemo(t *testing.T) {
	hdr := http.Header{"Anthropic-Version": {"2023-06-01"}, "Anthropic-Beta": {"a", "b"}}
	bodies := []string{baseRequest, set(t, baseRequest, "temperature", 0.3), `{"messages":[{"role":"user","content":"hi"}],"model":"m"}`,
		`{ "model" : "m", "messages" : [ { "content" : "hi", "role" : "user" } ] }`}
	for _, b := range bodies {
		for _, h := range []http.Header{nil, hdr} {
			for _, extra := range [][]string{nil, {"stream"}, {"version:3"}} {
				want := canonicalDigest([]byte(b), h, extra...)
				for range 3 {
					if got := DigestRequest([]byte(b), h, extra...); got != want {
						t.Fatalf("remembered digest of %s %v %v differs from the canonical one", b, h, extra)
					}
				}
			}
		}
	}
	if DigestRequest([]byte(bodies[2]), nil) != DigestRequest([]byte(bodies[3]), nil) {
		t.Error("bodies differing in spelling: different digests")
	}
	if DigestRequest([]byte(bodies[2]), nil) == DigestRequest([]byte(bodies[2]), hdr) {
		t.Error("remembered digest answered for another header set")
	}
	if DigestRequest([]byte(bodies[2]), nil) == DigestRequest([]byte(bodies[2]), nil, "stream") {
		t.Error("remembered digest answered for other extras")
	}
	// Fill the table many times over: every digest stays the canonical
	// one when slots are replaced.
	want := make([]Digest, 3000)
	for i := range want {
		want[i] = canonicalDigest(question(i), nil)
	}
	for i := range 5000 {
		if DigestRequest(question(i%3000), nil) != want[i%3000] {
			t.Fatalf("request %d: remembered digest differs", i)
		}
	}
}

func question(i int) []byte {
	return []byte(fmt.Sprintf(`{"messages":[{"role":"user","content":"question %d"}]}`, i))
}

// BenchmarkKey50MessagesCold is BenchmarkKey50Messages for a request not
// seen before: the canonical walk.
func BenchmarkKey50MessagesCold(b *testing.B) {
	var msgs []string
	for i := range 50 {
		msgs = append(msgs, fmt.Sprintf(`{"role":"user","content":"Message number %d: %s"}`, i, strings.Repeat("lorem ipsum dolor sit amet ", 8)))
	}
	body := []byte(`{"model":"gpt-x","temperature":0.2,"max_tokens":256,"messages":[` + strings.Join(msgs, ",") + `]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		clear(digestMemo[:])
		_ = KeyOf("key:a", "openai:chat/completions", baseRoute, DigestRequest(body, nil))
	}
}
