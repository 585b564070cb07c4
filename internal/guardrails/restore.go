package guardrails

import (
	"bytes"
	"strconv"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
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
// events, held per output item and released, as a delta event of its own,
// before the first event that ends the text (response.output_text.done,
// response.content_part.done or response.output_item.done: see
// gateway.Releaser); and Anthropic's (a native Anthropic target's stream):
// content_block_delta events' text_delta, held per content block and
// released, as a text delta of its own, before the block's
// content_block_stop. In every other event (and in
// tool-call arguments) whole placeholders are restored where they stand.
type Restorer struct {
	v       *Vault
	pending []string // held text by choice (Anthropic: content block) index
}

// NewRestorer returns the tap restoring v's values.
func NewRestorer(v *Vault) *Restorer { return &Restorer{v: v} }

var (
	evOutputDelta = []byte("response.output_text.delta")
	evBlockDelta  = []byte("content_block_delta")
	evBlockStop   = []byte("content_block_stop")
	evTextDone    = []byte("response.output_text.done")
	evPartDone    = []byte("response.content_part.done")
	evItemDone    = []byte("response.output_item.done")
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
	if f == provider.FormatAnthropic && bytes.Equal(ev.Name, evBlockDelta) {
		if d := gjson.GetBytes(data, "delta"); d.Get("type").Str == "text_delta" {
			data = r.delta(data, int(gjson.GetBytes(data, "index").Int()), "delta.text", d.Get("text"), false)
		}
	}
	if f == provider.FormatOpenAI {
		if bytes.Equal(ev.Name, evOutputDelta) {
			data = r.delta(data, int(gjson.GetBytes(data, "output_index").Int()), "delta", gjson.GetBytes(data, "delta"), false)
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

// Release implements gateway.Releaser: before an Anthropic
// content_block_stop, the text held for its block, as a text_delta;
// before the first Responses event ending an output item's text, the text
// held for the item, as a response.output_text.delta.
func (r *Restorer) Release(ev *dialect.Event, f provider.Format) (sse.Event, bool) {
	if f == provider.FormatOpenAI {
		return r.releaseResponses(ev)
	}
	if f != provider.FormatAnthropic || !bytes.Equal(ev.Name, evBlockStop) {
		return sse.Event{}, false
	}
	idx := int(gjson.GetBytes(ev.Data, "index").Int())
	if idx < 0 || idx >= len(r.pending) || r.pending[idx] == "" {
		return sse.Event{}, false
	}
	data := append([]byte(`{"type":"content_block_delta","index":`), strconv.Itoa(idx)...)
	data = append(data, `,"delta":{"type":"text_delta","text":"`...)
	data = append(appendEscaped(data, r.pending[idx]), `"}}`...)
	r.pending[idx] = ""
	return sse.Event{Name: evBlockDelta, Data: data}, true
}

// releaseResponses is Release for a Responses stream.
func (r *Restorer) releaseResponses(ev *dialect.Event) (sse.Event, bool) {
	if len(r.pending) == 0 || !bytes.Equal(ev.Name, evTextDone) && !bytes.Equal(ev.Name, evPartDone) && !bytes.Equal(ev.Name, evItemDone) {
		return sse.Event{}, false
	}
	done := gjson.GetManyBytes(ev.Data, "output_index", "content_index", "item_id", "item.id", "sequence_number")
	idx := int(done[0].Int())
	if idx < 0 || idx >= len(r.pending) || r.pending[idx] == "" {
		return sse.Event{}, false
	}
	item := done[2]
	if !item.Exists() {
		item = done[3]
	}
	data := append([]byte(`{"type":"response.output_text.delta","item_id":`), orNull(item.Raw)...)
	data = append(data, `,"output_index":`...)
	data = strconv.AppendInt(data, int64(idx), 10)
	data = append(data, `,"content_index":`...)
	data = strconv.AppendInt(data, done[1].Int(), 10)
	data = append(data, `,"delta":"`...)
	data = append(appendEscaped(data, r.pending[idx]), `","logprobs":[]`...)
	if done[4].Exists() {
		data = append(append(data, `,"sequence_number":`...), done[4].Raw...)
	}
	data = append(data, '}')
	r.pending[idx] = ""
	return sse.Event{Name: evOutputDelta, Data: data}, true
}

func orNull(raw string) string {
	if raw == "" {
		return "null"
	}
	return raw
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

var (
	_ gateway.Tap      = (*Restorer)(nil)
	_ gateway.Releaser = (*Restorer)(nil)
)
