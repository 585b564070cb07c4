package jsonraw

import (
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func TestPath(t *testing.T) {
	t.Parallel()
	doc := ` { "a" : 1, "s":"x\"y", "o": {"k": [1, {"k":"no"}, "]"], "k2" : { "deep" : "\u00e9\\" } }, "t":true,"n":null, "dup":1, "dup":2 } `
	if !gjson.Valid(doc) {
		t.Fatal("invalid test document")
	}
	for _, path := range [][]string{{"a"}, {"s"}, {"o"}, {"o", "k"}, {"o", "k2", "deep"}, {"t"}, {"n"}, {"dup"}, {"missing"}, {"a", "b"}, {"o", "k", "k"}} {
		if got, want := Path(doc, path...), gjson.Get(doc, strings.Join(path, ".")).Raw; got != want {
			t.Errorf("%v: %q, gjson %q", path, got, want)
		}
	}
}

func FuzzPath(f *testing.F) {
	f.Add(`{"delta":{"message":{"content":{"text":"a\"b"}}}}`, "delta", "message")
	f.Add(`{"a":[1,{"b":"}"}],"b":{"c":2}}`, "b", "c")
	f.Add(`[1,2]`, "a", "b")
	f.Fuzz(func(t *testing.T, doc, k1, k2 string) {
		if !gjson.Valid(doc) || !plainKey(k1) || !plainKey(k2) {
			return // gjson path syntax would get in the way
		}
		if got, want := Path(doc, k1, k2), gjson.Get(doc, k1+"."+k2).Raw; got != want && !strings.Contains(doc, "\\") {
			t.Fatalf("Path(%q, %q, %q) = %q, gjson %q", doc, k1, k2, got, want)
		}
	})
}

func plainKey(k string) bool {
	for _, c := range []byte(k) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return k != "" && (k[0] >= 'a' && k[0] <= 'z' || k[0] >= 'A' && k[0] <= 'Z') // digits index arrays in gjson
}

func TestField(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ obj, key, want string }{
		{`{"a":1}`, "a", "1"},
		{` { "a" : "x\"y" , "b":[1,{"a":2}] } `, "b", `[1,{"a":2}]`},
		{`{"a":{"b":"}"},"b":true}`, "b", "true"},
		{`{"dup":1,"dup":2}`, "dup", "1"},
		{`{"a":1}`, "b", ""},
		{`[1,2]`, "a", ""},
		{`"a"`, "a", ""},
		{``, "a", ""},
		{`{"a"`, "a", ""},  // malformed: no panic
		{`{"a":`, "a", ""}, // malformed: no panic
	} {
		if got := Field(c.obj, c.key); got != c.want {
			t.Errorf("Field(%q, %q) = %q, want %q", c.obj, c.key, got, c.want)
		}
	}
}

func TestElems(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{`[]`, ` [ ] `, `[1]`, ` [ 1 , "a,]" , {"b":[2,3]} , [4] , null ] `, `{"a":1}`, `"x"`, ``} {
		var got, want []string
		Elems(doc, func(raw string) bool { got = append(got, raw); return true })
		if r := gjson.Parse(doc); r.IsArray() {
			r.ForEach(func(_, v gjson.Result) bool { want = append(want, v.Raw); return true })
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("Elems(%q) = %q, gjson %q", doc, got, want)
		}
	}
	n := 0
	Elems(`[1,2,3]`, func(string) bool { n++; return n < 2 })
	if n != 2 {
		t.Errorf("Elems went on after false: %d calls", n)
	}
}

func FuzzElems(f *testing.F) {
	f.Add(`[1,"a",{"b":[2]},null]`)
	f.Add(`{"a":[1]}`)
	f.Fuzz(func(t *testing.T, doc string) {
		var got []string
		Elems(doc, func(raw string) bool { got = append(got, raw); return true })
		if !gjson.Valid(doc) {
			return // only: no panic
		}
		var want []string
		if r := gjson.Parse(doc); r.IsArray() {
			r.ForEach(func(_, v gjson.Result) bool { want = append(want, v.Raw); return true })
		}
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("Elems(%q) = %q, gjson %q", doc, got, want)
		}
	})
}
