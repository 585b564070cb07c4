package guardrails

import (
	"bytes"
	"strconv"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// Restorer is the reply tap that puts masked values back into the
// answer: in a body at once; in a stream per event, holding back the end
// of a text delta that could begin a placeholder until the next delta of
// the same choice completes it or shows it is none (a placeholder split
// across events at any byte is restored whole). What is held is flushed
// with the choice's finishing chunk.
//
// Text deltas are OpenAI's: chat chunks' choices[].delta.content,
// completions' choices[].text, and Responses' response.output_text.delta
// events; in every other event (and in tool-call arguments) whole
// placeholders are restored where they stand.
type Restorer struct {
	v       *Vault
	pending []string // held text by choice index
}

// NewRestorer returns the tap restoring v's values.
func NewRestorer(v *Vault) *Restorer { return &Restorer{v: v} }

var (
	evOutputDelta = []byte("response.output_text.delta")
	bracket       = []byte{'['}
)

// Event implements gateway.Tap.
func (r *Restorer) Event(ev *dialect.Event, f provider.Format) {
	if ev.UsageOnly || len(ev.Data) == 0 {
		return
	}
	held := false
	for _, p := range r.pending {
		held = held || p != ""
	}
	if !held && !mayHold(ev.Data) {
		return // no placeholder can start here: the usual chunk costs one scan
	}
	data := ev.Data
	if f == provider.FormatOpenAI {
		if bytes.Equal(ev.Name, evOutputDelta) {
			data = r.delta(data, 0, "delta", gjson.GetBytes(data, "delta"), false)
		} else {
			gjson.GetBytes(data, "choices").ForEach(func(k, ch gjson.Result) bool {
				idx := int(ch.Get("index").Int())
				finish := ch.Get("finish_reason").Type == gjson.String
				if t := ch.Get("text"); t.Exists() {
					data = r.delta(data, idx, "choices."+strconv.Itoa(int(k.Int()))+".text", t, finish)
				} else {
					data = r.delta(data, idx, "choices."+strconv.Itoa(int(k.Int()))+".delta.content", ch.Get("delta.content"), finish)
				}
				return true
			})
		}
	}
	if bytes.Contains(data, bracket) {
		data = []byte(r.v.Restore(string(data), true))
	}
	ev.Data = data
}

// mayHold reports whether data has a '[' that could open a placeholder: one
// followed by an upper-case letter or ending a JSON string (or opening an
// array of strings: then the chunk is parsed for nothing). The arrays of
// OpenAI's chunks open with '[' followed by '{' or ']'.
func mayHold(data []byte) bool {
	for i := 0; ; {
		j := bytes.IndexByte(data[i:], '[')
		if j < 0 {
			return false
		}
		i += j + 1
		if i >= len(data) {
			return true
		}
		if c := data[i]; isUpper(c) || c == '"' {
			return true
		}
	}
}

// delta restores one text delta at path: the held text of choice idx
// before it, placeholders whole in it restored, a possible placeholder at
// its end held back (unless the choice finishes).
func (r *Restorer) delta(data []byte, idx int, path string, content gjson.Result, finish bool) []byte {
	if idx < 0 || idx > 127 {
		return data
	}
	for len(r.pending) <= idx {
		r.pending = append(r.pending, "")
	}
	p := r.pending[idx]
	if content.Type != gjson.String && p == "" {
		return data
	}
	text := p + content.Str
	restored := r.v.Restore(text, false)
	hold := 0
	if !finish {
		hold = r.v.pendingPrefix(restored)
	}
	emit := restored[:len(restored)-hold]
	r.pending[idx] = restored[len(restored)-hold:]
	if content.Type == gjson.String && emit == content.Str {
		return data
	}
	out, err := sjson.SetBytes(data, path, emit)
	if err != nil {
		return data
	}
	return out
}

// Body implements gateway.Tap.
func (r *Restorer) Body(b []byte, _ provider.Format) []byte {
	if !bytes.Contains(b, bracket) {
		return b
	}
	return []byte(r.v.Restore(string(b), true))
}

// End implements gateway.Tap.
func (r *Restorer) End(gateway.Outcome, *gateway.Info) {}

var _ gateway.Tap = (*Restorer)(nil)
