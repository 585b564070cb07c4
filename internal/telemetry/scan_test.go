package telemetry

import (
	"strings"
	"testing"
)

func TestEachField(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{}`, ""},
		{` { "a" : 1 , "b":"x\"y", "c": {"d":[1,{"e":"}"}]}, "f":null } `, `a=1|b="x\"y"|c={"d":[1,{"e":"}"}]}|f=null|`},
		{`{"a":1,`, "a=1|"},
		{`[1,2]`, ""},
		{``, ""},
		{`{"a"}`, ""},
		{`{"a":1,"stop":2,"b":3}`, "a=1|stop=2|"},
	} {
		var b strings.Builder
		eachField(tc.in, func(k, v string) bool { b.WriteString(k + "=" + v + "|"); return k != "stop" })
		if b.String() != tc.want {
			t.Errorf("eachField(%q) = %q, want %q", tc.in, b.String(), tc.want)
		}
	}
}

func TestRawString(t *testing.T) {
	for in, want := range map[string]string{`"stop"`: "stop", `"a\nb"`: "a\nb", `"\u00e9"`: "é", `null`: "", `1`: "", `""`: "", `"x`: ""} {
		if got := rawString(in); got != want {
			t.Errorf("rawString(%s) = %q, want %q", in, got, want)
		}
	}
}
