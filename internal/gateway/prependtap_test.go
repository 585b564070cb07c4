package gateway

import (
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

type namedTap struct {
	name string
	log  *[]string
}

func (t namedTap) Event(*dialect.Event, provider.Format) { *t.log = append(*t.log, t.name) }
func (t namedTap) Body(b []byte, _ provider.Format) []byte {
	*t.log = append(*t.log, t.name)
	return b
}
func (t namedTap) End(Outcome, *Info) {}

// PrependTap places a tap right after the usage tap, before those added
// so far.
func TestPrependTap(t *testing.T) {
	var log []string
	x := &Exchange{}
	x.taps = x.tapBuf[:0]
	x.AddTap(namedTap{"usage", &log})
	x.AddTap(namedTap{"admission", &log})
	x.AddTap(namedTap{"cache", &log})
	x.AddTap(namedTap{"telemetry", &log})
	x.PrependTap(namedTap{"restore", &log})
	for _, tp := range x.taps {
		tp.Body(nil, provider.FormatOpenAI)
	}
	want := []string{"usage", "restore", "admission", "cache", "telemetry"}
	if len(log) != len(want) {
		t.Fatalf("%v", log)
	}
	for i := range want {
		if log[i] != want[i] {
			t.Fatalf("order %v, want %v", log, want)
		}
	}
}
