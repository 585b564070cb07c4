package openai

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/tidwall/gjson"
)

// chunkUsageRef is what the gateway's stream tap computed before ChunkUsage.
func chunkUsageRef(data []byte) (Usage, bool, bool) {
	if !bytes.Contains(data, usageKey) {
		return Usage{}, false, false
	}
	u := gjson.GetBytes(data, "usage")
	if !u.IsObject() {
		return Usage{}, false, false
	}
	return ParseUsage(u), true, !(gjson.GetBytes(data, "choices.#").Int() > 0)
}

const (
	chunkContent     = `{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","system_fingerprint":"fp_fakellm","choices":[{"index":0,"delta":{"content":" word7"},"logprobs":null,"finish_reason":null}]}`
	chunkUsageNull   = `{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","system_fingerprint":"fp_fakellm","choices":[{"index":0,"delta":{"content":" word7"},"logprobs":null,"finish_reason":null}],"usage":null}`
	chunkUsageObject = `{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","system_fingerprint":"fp_fakellm","choices":[],"usage":{"prompt_tokens":42,"completion_tokens":20,"total_tokens":62,"prompt_tokens_details":{"cached_tokens":7,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}`
)

var chunks = []string{
	chunkContent,
	chunkUsageNull,
	chunkUsageObject,
	`{"choices":[{"delta":{}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}`,
	`{"usage":null,"choices":[]}`,
	`{"usage" : null , "choices":[]}`,
	`{"choices":[], "usage"	:	null	}`,
	`{"choices":[],"usage":nul}`,
	`{"choices":[],"usage":nullx}`,
	`{"choices":[],"usage":null`,
	`{"choices":[],"usage":`,
	`{"choices":[],"usage"`,
	`"usage"`,
	`{"choices":[],"usage":{}}`,
	`{"choices":[],"usage":[]}`,
	`{"choices":[],"usage":1}`,
	`{"choices":[],"usage":"x"}`,
	`{"choices":[],"usage":true}`,
	`{"choices":{},"usage":{"input_tokens":3,"output_tokens":4,"input_tokens_details":{"cached_tokens":1}}}`,
	`{"choices":null,"usage":{"prompt_tokens":3}}`,
	`{"usage":{"prompt_tokens":3}}`,
	`{"choices":[{"delta":{"content":"usage"}}]}`,
	`{"choices":[{"delta":{"content":"usage"}}],"usage":null}`,
	`{"choices":[{"delta":{"content":"\"usage\":null"}}],"usage":{"prompt_tokens":5}}`,
	`{"choices":[{"usage":null}],"usage":{"prompt_tokens":5}}`,
	`{"choices":[{"usage":{"prompt_tokens":9}}],"usage":null}`,
	`{"choices":[{"usage":null}]}`,
	`{"usage":null,"usage":{"prompt_tokens":5}}`,
	`{"usage":{"prompt_tokens":5},"usage":null}`,
	`{"my\"usage":null}`,
	`{"my\"usage":null,"usage":{"prompt_tokens":2}}`,
	`{"a":"usage":null,"usage":{"prompt_tokens":2}}`,
	`garbage ,"usage":null}`,
	`garbage ,"usage":{"prompt_tokens":1}}`,
	`{"usage":null}` + "\n",
	``,
}

func checkChunk(t *testing.T, data []byte) {
	t.Helper()
	u, present, empty := ChunkUsage(data)
	wu, wpresent, wempty := chunkUsageRef(data)
	if u != wu || present != wpresent || empty != wempty {
		t.Fatalf("%q: got %+v %v %v, want %+v %v %v", data, u, present, empty, wu, wpresent, wempty)
	}
	if g, w := GetUsage(data), ParseUsage(gjson.GetBytes(data, "usage")); g != w {
		t.Fatalf("GetUsage(%q) = %+v, want %+v", data, g, w)
	}
	if g, w := UsageAt(data, "response.usage"), ParseUsage(gjson.GetBytes(data, "response.usage")); g != w {
		t.Fatalf("UsageAt(%q) = %+v, want %+v", data, g, w)
	}
}

func TestChunkUsage(t *testing.T) {
	for _, c := range chunks {
		checkChunk(t, []byte(c))
	}
	u, present, empty := ChunkUsage([]byte(chunkUsageObject))
	if want := (Usage{InputTokens: 42, OutputTokens: 20, CachedTokens: 7, Known: true}); u != want || !present || !empty {
		t.Fatalf("usage chunk: %+v %v %v", u, present, empty)
	}
	if _, present, _ := ChunkUsage([]byte(chunkUsageNull)); present {
		t.Fatal("usage:null is not present")
	}
	if !usageNullAt([]byte(chunkUsageNull), bytes.Index([]byte(chunkUsageNull), usageKey)) {
		t.Fatal("usage:null chunk missed the fast path")
	}
}

func TestChunkUsageAllocs(t *testing.T) {
	for _, c := range []string{chunkContent, chunkUsageNull, chunkUsageObject} {
		data := []byte(c)
		if n := testing.AllocsPerRun(100, func() { ChunkUsage(data) }); n != 0 {
			t.Errorf("ChunkUsage(%.40q…): %v allocs", c, n)
		}
		if n := testing.AllocsPerRun(100, func() { GetUsage(data) }); n != 0 {
			t.Errorf("GetUsage(%.40q…): %v allocs", c, n)
		}
	}
}

func FuzzChunkUsage(f *testing.F) {
	for _, c := range chunks {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkChunk(t, data)
	})
}

// BenchmarkChunkUsage measures the stream tap's work per chunk (compare
// with chunkUsageRef, the gjson.GetBytes code it replaces, in
// BenchmarkChunkUsageRef).
func BenchmarkChunkUsage(b *testing.B) { benchChunks(b, ChunkUsage) }

func BenchmarkChunkUsageRef(b *testing.B) { benchChunks(b, chunkUsageRef) }

func benchChunks(b *testing.B, f func([]byte) (Usage, bool, bool)) {
	cases := []struct {
		name, data string
		present    bool
	}{
		{"content", chunkContent, false},
		{"content_usage_null", chunkUsageNull, false},
		{"usage", chunkUsageObject, true},
	}
	for _, c := range cases {
		data := []byte(c.data)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, present, _ := f(data); present != c.present {
					b.Fatal("wrong answer")
				}
			}
		})
	}
}

var usageBody = []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"fake-model","choices":[{"index":0,"message":{"role":"assistant","content":"Use reverse_proxy with two upstreams and enable active health checks."},"finish_reason":"stop"}],"usage":{"prompt_tokens":42,"completion_tokens":20,"total_tokens":62,"prompt_tokens_details":{"cached_tokens":0}}}`)

func BenchmarkUsageOf(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if !UsageOf(usageBody).Known {
			b.Fatal("no usage")
		}
	}
}

func TestInPlace(t *testing.T) {
	data := []byte(`{"a":{"b":"c\"d"},"e":[1,2]}`)
	for _, path := range []string{"a", "a.b", "e", "e.#", "missing"} {
		got, want := GetInPlace(data, path), gjson.GetBytes(data, path)
		if got.Raw != want.Raw || got.Str != want.Str || got.Type != want.Type {
			t.Errorf("GetInPlace(%q) = %+v, want %+v", path, got, want)
		}
	}
	if got, want := ParseInPlace(data), gjson.ParseBytes(data); got.Raw != want.Raw || got.Type != want.Type {
		t.Errorf("ParseInPlace = %+v, want %+v", got, want)
	}
	if n := testing.AllocsPerRun(100, func() { GetInPlace(data, "a") }); n != 0 {
		t.Errorf("GetInPlace allocates %v times", n)
	}
}

func TestIndexUsageKey(t *testing.T) {
	for _, s := range []string{``, `"usage"`, `usage"`, `"usag"`, `x"usage"`, `usage""usage"`, `"ususage"`, `"usageusage"`, `"usage" "usage"`,
		`{"a":"\"usage\"","usage":null}`, `""usage"`, `usage"usage"`, chunkUsageNull} {
		if got, want := indexUsageKey([]byte(s)), bytes.Index([]byte(s), usageKey); got != want {
			t.Errorf("%q: %d, want %d", s, got, want)
		}
	}
	// Random strings of the key's pieces and letters.
	pieces := []string{`"`, `u`, `usage`, `usage"`, `"usage"`, `sage"`, `x`, `\\`}
	rnd := rand.New(rand.NewPCG(1, 2))
	found := 0
	for range 20000 {
		var b []byte
		for range rnd.IntN(8) {
			b = append(b, pieces[rnd.IntN(len(pieces))]...)
		}
		got, want := indexUsageKey(b), bytes.Index(b, usageKey)
		if got != want {
			t.Fatalf("%q: %d, want %d", b, got, want)
		}
		if want >= 0 {
			found++
		}
	}
	if found < 1000 {
		t.Fatalf("only %d strings held the key", found)
	}
}
