package jsonraw

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheck(t *testing.T) {
	deep := strings.Repeat("[", 129) + strings.Repeat("]", 129)
	tests := []struct {
		in      string
		unique  bool
		problem Problem
		member  string
		path    string
	}{
		{in: `{}`},
		{in: ` {"a":[1,2.5e-3,-0,true,false,null,"x\u00e9\n"]} `},
		{in: `"\ud83d\ude00"`},
		{in: strings.Repeat("[", 128) + strings.Repeat("]", 128)},
		{in: deep, problem: ProblemDepth},
		{in: strings.Repeat("[", 6<<20), problem: ProblemDepth},
		{in: `{"model":"a","model":"b"}`, unique: true, problem: ProblemDuplicate, member: "model"},
		{in: `{"model":"a","model":"b"}`},
		{in: `{"model":"a","mod\u0065l":"b"}`, unique: true, problem: ProblemDuplicate, member: "model"},
		{in: `{"m\u006fdel":"a","model":"b"}`, unique: true, problem: ProblemDuplicate, member: "model"},
		{in: `{"messages":[{"role":"user"},{"role":"user","role":"system"}]}`, unique: true, problem: ProblemDuplicate, member: "role", path: "messages[1]"},
		{in: `{"a":{"b":{"c":1,"c":2}}}`, unique: true, problem: ProblemDuplicate, member: "c", path: "a.b"},
		{in: `{"a":{"x":1},"b":{"x":1}}`, unique: true},
		{in: `{"a":1,}`, problem: ProblemSyntax},
		{in: `[1,]`, problem: ProblemSyntax},
		{in: `{"a" 1}`, problem: ProblemSyntax},
		{in: `{"a":1]`, problem: ProblemSyntax},
		{in: `[1}`, problem: ProblemSyntax},
		{in: `01`, problem: ProblemSyntax},
		{in: `1.`, problem: ProblemSyntax},
		{in: `1e`, problem: ProblemSyntax},
		{in: `-`, problem: ProblemSyntax},
		{in: `tru`, problem: ProblemSyntax},
		{in: `"a`, problem: ProblemSyntax},
		{in: `"\x"`, problem: ProblemSyntax},
		{in: `"\u12g4"`, problem: ProblemSyntax},
		{in: "\"a\tb\"", problem: ProblemSyntax},
		{in: "\"\xff\"", problem: ProblemUTF8},
		{in: "\"\xed\xa0\x80\"", problem: ProblemUTF8}, // encoded surrogate
		{in: `{} {}`, problem: ProblemSyntax},
		{in: ``, problem: ProblemSyntax},
	}
	for _, tt := range tests {
		name := tt.in
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			rules := UTF8
			if tt.unique {
				rules |= Unique
			}
			err := Check([]byte(tt.in), 0, rules)
			if tt.problem == 0 {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			if err == nil || err.Problem != tt.problem {
				t.Fatalf("Check = %v, want problem %d", err, tt.problem)
			}
			if err.Member != tt.member || err.Path != tt.path {
				t.Fatalf("member %q path %q, want %q %q", err.Member, err.Path, tt.member, tt.path)
			}
		})
	}
}

func TestCheckManyMembers(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := 0; i < 5000; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + itoa(i) + `":1`)
	}
	ok := b.String() + "}"
	if err := Check([]byte(ok), 0, Unique); err != nil {
		t.Fatal(err)
	}
	dup := b.String() + `,"k\u0061` + "0" + `":2}`
	if err := Check([]byte(dup), 0, Unique); err == nil || err.Member != "ka0" {
		t.Fatalf("Check = %v, want duplicate ka0", err)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestCheckAllocs(t *testing.T) {
	body := []byte(`{"model":"gpt-4o","stream":true,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi \u00e9 there"}],"max_tokens":64,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"}}}}}]}`)
	if n := testing.AllocsPerRun(100, func() { _ = Check(body, 0, Unique|UTF8) }); n != 0 {
		t.Fatalf("Check allocates %v times, want 0", n)
	}
}

func TestUnescape(t *testing.T) {
	for _, s := range []string{`a\"b\\c\/d\b\f\n\r\t`, `\u00e9\ud83d\ude00`, `\ud800x`, `plain`} {
		var want string
		if err := json.Unmarshal([]byte(`"`+s+`"`), &want); err != nil {
			t.Fatal(err)
		}
		if got := string(Unescape(nil, []byte(s))); got != want {
			t.Errorf("Unescape(%s) = %q, want %q", s, got, want)
		}
	}
}

// FuzzCheck holds Check to encoding/json: the same documents are valid,
// and with unique set a document json accepts is refused only for a
// duplicate member or its depth.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{}`, `[1,{"a":"\u00e9"}]`, `{"a":1,"a":2}`, `"\ud83d\ude00"`, `-0.5e+3`, "\"\xff\"", `[[[[]]]]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := Check(data, 0, UTF8)
		std := json.Valid(data)
		if (err == nil) != std {
			if err != nil && (err.Problem == ProblemDepth || err.Problem == ProblemUTF8 && !utf8.Valid(data)) {
				return
			}
			t.Fatalf("Check = %v, json.Valid = %v", err, std)
		}
		if Check(data, 0, 0) != nil && std {
			t.Fatalf("Check without UTF8 refuses valid JSON")
		}
		if err := Check(data, 0, Unique|UTF8); err != nil && std && err.Problem != ProblemDuplicate && err.Problem != ProblemDepth {
			t.Fatalf("unique Check = %v on valid JSON", err)
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	body := []byte(`{"model":"gpt-4o","stream":true,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"` + strings.Repeat("hello world ", 80) + `"}],"max_tokens":64}`)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		_ = Check(body, 0, Unique|UTF8)
	}
}

// BenchmarkValidUTF8Chunk is the check of every stream event passed to a
// client as it is: an OpenAI chat chunk of one word.
func BenchmarkValidUTF8Chunk(b *testing.B) {
	chunk := []byte(`{"id":"chatcmpl-fe3c9af27eeef5a600000001","object":"chat.completion.chunk","created":1796325066,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0123456789","choices":[{"index":0,"delta":{"content":" word3"},"logprobs":null,"finish_reason":null}]}`)
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		_ = ValidUTF8(chunk)
	}
}
