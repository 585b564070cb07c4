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

func TestScanFinishReasons(t *testing.T) {
	body := `{"choices":[{"message":{"content":"say \"finish_reason\":\"x\" _reason\":\"y"},"finish_reason":"stop"},` +
		`{"finish_reason":"length"},{"finish_reason":null},{"finish_reason":"a\nb"}],"other_reason":"z"}`
	var rt requestTrace
	rt.scanFinishReasons([]byte(body))
	if got := strings.Join(rt.finishReasons, "|"); got != "stop|length|a\nb" {
		t.Fatalf("finish reasons %q", got)
	}
}
