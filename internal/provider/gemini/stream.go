package gemini

import (
	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

// maxCandidates bounds the candidate indexes a stream may use.
const maxCandidates = 128

// decoder translates Gemini's streamGenerateContent?alt=sse event stream
// into OpenAI chat.completion.chunk events. It implements provider.Decoder.
//
// Upstream, every event is "data: {GenerateContentResponse}" (Google ends
// lines with CRLF); there is no [DONE]: the stream ends at EOF after the
// event carrying the finishReason. Text arrives as deltas; function calls
// arrive whole. https://ai.google.dev/api/generate-content#method:-models.streamgeneratecontent
//
// Out, for each candidate (choice index): a role chunk
// {"role":"assistant","content":""} before its first delta, one content
// chunk per upstream event with text (thought parts skipped), one
// tool_calls chunk per functionCall (index, id, type, name and the whole
// arguments), and a finish chunk {"delta":{},"finish_reason":...} when
// the finishReason arrives. At EOF comes the usage chunk
// {"choices":[],"usage":{...}} from the last usageMetadata (Gemini's counts
// are cumulative), then io.EOF. All chunks share the id ("chatcmpl-" +
// responseId), created and model (modelVersion).
//
// EOF before any finishReason is a cut stream (*provider.Error of
// KindProtocol), as is an event that is not a JSON object; an "error"
// object in the stream becomes a KindStatus *provider.Error with its code.
//
// The translator reuses its buffers: once warmed up, a text chunk costs no
// allocation.
type decoder struct {
	reported openai.Usage     // as reported in the usage chunk, once it is out
	q        *provider.Events // the queue of the event being decoded
	model    string           // requested model, when the stream names none
	created  int64
	seed     uint64
	calls    uint64 // tool calls seen (ids without one are derived from it)

	pre     []byte // chunk prefix: `{"id":...,"model":...,"choices":[`
	cands   []candState
	usage   usage
	scratch []byte

	finished bool // some candidate finished (or the prompt was blocked)
}

type candState struct {
	started bool // role chunk sent
	tools   int  // tool calls sent
}

// newDecoder returns the decoder of one stream of model.
func newDecoder(model string, created int64, seed uint64) *decoder {
	return &decoder{model: model, created: created, seed: seed}
}

// Decode implements provider.Decoder.
func (s *decoder) Decode(ev sse.Event, q *provider.Events) (bool, error) {
	if len(ev.Data) == 0 {
		return false, nil
	}
	s.q = q
	return false, s.translate(ev.Data)
}

// End implements provider.Decoder: a stream ends at EOF after a finish
// reason, with the usage chunk.
func (s *decoder) End(q *provider.Events) error {
	if !s.finished {
		return provider.Protocol("stream ended before a finish reason")
	}
	if s.usage.known {
		q.Buf = append(q.Buf, s.pre...)
		q.Buf = append(q.Buf, `],"usage":`...)
		q.Buf = s.usage.appendJSON(q.Buf)
		s.reported = s.usage.openAI()
		q.Buf = append(q.Buf, '}')
		q.End()
	}
	return nil
}

// translate queues the OpenAI chunks of one upstream event.
func (s *decoder) translate(data []byte) error {
	if !jsonraw.Valid(data) {
		return provider.Protocol("invalid JSON in stream")
	}
	root := parse(data)
	if !root.IsObject() {
		return provider.Protocol("stream event is not a JSON object")
	}
	if e := root.Get("error"); e.Exists() {
		return streamError(e)
	}
	if s.pre == nil {
		s.pre = appendHead(make([]byte, 0, 160), root, "chat.completion.chunk", s.created, s.model, s.seed)
		s.pre = append(s.pre, `,"choices":[`...)
	}
	if u := root.Get("usageMetadata"); u.IsObject() {
		s.usage = readUsage(u)
	}
	var err error
	pos := 0
	root.Get("candidates").ForEach(func(_, c gjson.Result) bool {
		idx := pos
		if v := c.Get("index"); v.Type == gjson.Number {
			idx = int(v.Int())
		}
		pos++
		if idx < 0 || idx >= maxCandidates {
			err = provider.Protocol("candidate index out of range")
			return false
		}
		s.candidate(idx, c)
		return true
	})
	if err != nil {
		return err
	}
	if pos == 0 {
		if br := root.Get("promptFeedback.blockReason"); br.Type == gjson.String && br.Str != "" {
			st := s.cand(0)
			s.role(0, st)
			s.finish(0, "content_filter")
		}
	}
	return nil
}

func (s *decoder) cand(idx int) *candState {
	for len(s.cands) <= idx {
		s.cands = append(s.cands, candState{})
	}
	return &s.cands[idx]
}

// candidate queues the chunks of one candidate of an event.
func (s *decoder) candidate(idx int, c gjson.Result) {
	st := s.cand(idx)
	textOpen := false
	c.Get("content.parts").ForEach(func(_, p gjson.Result) bool {
		if p.Get("thought").Type == gjson.True {
			return true
		}
		// jsonraw.Field rather than Get: no unescaping, no allocation.
		if t := jsonraw.Field(p.Raw, "text"); t != "" {
			if len(t) <= 2 || t[0] != '"' {
				return true // empty text (or not a string)
			}
			if !textOpen {
				s.role(idx, st)
				s.open(idx)
				s.q.Buf = append(s.q.Buf, `"delta":{"content":"`...)
				textOpen = true
			}
			s.q.Buf = appendStringInner(s.q.Buf, t)
			return true
		}
		if fc := p.Get("functionCall"); fc.IsObject() {
			if textOpen {
				s.q.Buf = append(s.q.Buf, `"}`...)
				s.close("")
				textOpen = false
			}
			s.role(idx, st)
			s.open(idx)
			s.q.Buf = append(s.q.Buf, `"delta":{"tool_calls":[{"index":`...)
			s.q.Buf = appendInt(s.q.Buf, int64(st.tools))
			s.q.Buf = append(s.q.Buf, ',')
			s.calls++
			s.q.Buf, s.scratch = appendToolCall(s.q.Buf, p, fc, s.seed, s.calls, s.scratch)
			s.q.Buf = append(s.q.Buf, "}]}"...)
			s.close("")
			st.tools++
		}
		return true
	})
	if textOpen {
		s.q.Buf = append(s.q.Buf, `"}`...)
		s.close("")
	}
	if fr := c.Get("finishReason"); fr.Type == gjson.String && fr.Str != "" {
		s.role(idx, st)
		s.finish(idx, finishReason(fr.Str, st.tools > 0))
	}
}

// role queues the role chunk of a candidate that has none yet.
func (s *decoder) role(idx int, st *candState) {
	if st.started {
		return
	}
	st.started = true
	s.open(idx)
	s.q.Buf = append(s.q.Buf, `"delta":{"role":"assistant","content":""}`...)
	s.close("")
}

func (s *decoder) finish(idx int, reason string) {
	s.finished = true
	s.open(idx)
	s.q.Buf = append(s.q.Buf, `"delta":{}`...)
	s.close(reason)
}

// open starts a chunk for choice idx, up to the delta.
func (s *decoder) open(idx int) {
	s.q.Buf = append(s.q.Buf, s.pre...)
	s.q.Buf = append(s.q.Buf, `{"index":`...)
	s.q.Buf = appendInt(s.q.Buf, int64(idx))
	s.q.Buf = append(s.q.Buf, ',')
}

// close ends a chunk with its finish reason ("" for null) and queues it.
func (s *decoder) close(finish string) {
	s.q.Buf = append(s.q.Buf, `,"logprobs":null,"finish_reason":`...)
	if finish == "" {
		s.q.Buf = append(s.q.Buf, "null"...)
	} else {
		s.q.Buf = append(s.q.Buf, '"')
		s.q.Buf = append(s.q.Buf, finish...)
		s.q.Buf = append(s.q.Buf, '"')
	}
	s.q.Buf = append(s.q.Buf, "}]}"...)
	s.q.End()
}

// Usage implements provider.UsageReporter: the usage of the usage chunk,
// typed.
func (s *decoder) Usage() openai.Usage { return s.reported }
