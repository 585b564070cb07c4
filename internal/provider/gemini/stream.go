package gemini

import (
	"io"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

// maxCandidates bounds the candidate indexes a stream may use.
const maxCandidates = 128

// Stream translates Gemini's streamGenerateContent?alt=sse event stream into
// OpenAI chat.completion.chunk events. It implements provider.Stream.
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
type Stream struct {
	rd       *sse.Reader
	closer   io.Closer
	provider string
	model    string // requested model, when the stream names none
	created  int64
	seed     uint64
	calls    uint64 // tool calls seen (ids without one are derived from it)

	pre     []byte // chunk prefix: `{"id":...,"model":...,"choices":[`
	out     []byte // translated events of one upstream event
	ends    []int  // end offset in out of each event
	next    int    // index in ends of the next event to return
	cands   []candState
	usage   usage
	scratch []byte

	finished bool // some candidate finished (or the prompt was blocked)
	started  bool // an event was returned
	done     bool // usage chunk queued: io.EOF next
	err      error
}

type candState struct {
	started bool // role chunk sent
	tools   int  // tool calls sent
}

// newStream reads upstream events from r; closer releases the upstream.
func newStream(r io.Reader, closer io.Closer, prov, model string, created int64, seed uint64) *Stream {
	rd := provider.GetSSEReader(r)
	return &Stream{rd: rd, closer: closer, provider: prov, model: model, created: created, seed: seed}
}

// Next implements provider.Stream.
func (s *Stream) Next() (sse.Event, error) {
	for {
		if s.next < len(s.ends) {
			start := 0
			if s.next > 0 {
				start = s.ends[s.next-1]
			}
			end := s.ends[s.next]
			s.next++
			s.started = true
			return sse.Event{Data: s.out[start:end]}, nil
		}
		if s.err != nil {
			return sse.Event{}, s.err
		}
		if s.done || s.rd == nil {
			s.err = io.EOF
			return sse.Event{}, io.EOF
		}
		s.out, s.ends, s.next = s.out[:0], s.ends[:0], 0
		ev, err := s.rd.Next()
		if err != nil {
			s.err = s.readError(err)
			continue
		}
		if len(ev.Data) == 0 {
			continue
		}
		if err := s.translate(ev.Data); err != nil {
			// Events translated before the failure are dropped with it: a
			// broken event is not partially delivered.
			s.out, s.ends = s.out[:0], s.ends[:0]
			s.err = err
		}
	}
}

// readError classifies an error of the upstream reader; at a clean EOF it
// queues the usage chunk.
func (s *Stream) readError(err error) error {
	switch {
	case err == io.EOF:
		if !s.finished {
			return s.protocol("stream ended before a finish reason")
		}
		if s.usage.known {
			s.out = append(s.out, s.pre...)
			s.out = append(s.out, `],"usage":`...)
			s.out = s.usage.appendJSON(s.out)
			s.out = append(s.out, '}')
			s.ends = append(s.ends, len(s.out))
		}
		s.done = true
		return nil
	case err == io.ErrUnexpectedEOF || err == sse.ErrTooLarge:
		return s.protocol("stream ended unexpectedly")
	}
	if pe, ok := err.(*provider.Error); ok {
		pe.StreamStarted = s.started
		return pe
	}
	return err
}

func (s *Stream) protocol(msg string) *provider.Error {
	return &provider.Error{Provider: s.provider, Kind: provider.KindProtocol, Message: msg, StreamStarted: s.started}
}

// translate queues the OpenAI chunks of one upstream event.
func (s *Stream) translate(data []byte) error {
	if !jsonraw.Valid(data) {
		return s.protocol("invalid JSON in stream")
	}
	root := parse(data)
	if !root.IsObject() {
		return s.protocol("stream event is not a JSON object")
	}
	if e := root.Get("error"); e.Exists() {
		pe := streamError(e)
		pe.Provider, pe.StreamStarted = s.provider, s.started
		return pe
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
			err = s.protocol("candidate index out of range")
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

func (s *Stream) cand(idx int) *candState {
	for len(s.cands) <= idx {
		s.cands = append(s.cands, candState{})
	}
	return &s.cands[idx]
}

// candidate queues the chunks of one candidate of an event.
func (s *Stream) candidate(idx int, c gjson.Result) {
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
				s.out = append(s.out, `"delta":{"content":"`...)
				textOpen = true
			}
			s.out = appendStringInner(s.out, t)
			return true
		}
		if fc := p.Get("functionCall"); fc.IsObject() {
			if textOpen {
				s.out = append(s.out, `"}`...)
				s.close("")
				textOpen = false
			}
			s.role(idx, st)
			s.open(idx)
			s.out = append(s.out, `"delta":{"tool_calls":[{"index":`...)
			s.out = appendInt(s.out, int64(st.tools))
			s.out = append(s.out, ',')
			s.calls++
			s.out, s.scratch = appendToolCall(s.out, p, fc, s.seed, s.calls, s.scratch)
			s.out = append(s.out, "}]}"...)
			s.close("")
			st.tools++
		}
		return true
	})
	if textOpen {
		s.out = append(s.out, `"}`...)
		s.close("")
	}
	if fr := c.Get("finishReason"); fr.Type == gjson.String && fr.Str != "" {
		s.role(idx, st)
		s.finish(idx, finishReason(fr.Str, st.tools > 0))
	}
}

// role queues the role chunk of a candidate that has none yet.
func (s *Stream) role(idx int, st *candState) {
	if st.started {
		return
	}
	st.started = true
	s.open(idx)
	s.out = append(s.out, `"delta":{"role":"assistant","content":""}`...)
	s.close("")
}

func (s *Stream) finish(idx int, reason string) {
	s.finished = true
	s.open(idx)
	s.out = append(s.out, `"delta":{}`...)
	s.close(reason)
}

// open starts a chunk for choice idx, up to the delta.
func (s *Stream) open(idx int) {
	s.out = append(s.out, s.pre...)
	s.out = append(s.out, `{"index":`...)
	s.out = appendInt(s.out, int64(idx))
	s.out = append(s.out, ',')
}

// close ends a chunk with its finish reason ("" for null) and queues it.
func (s *Stream) close(finish string) {
	s.out = append(s.out, `,"logprobs":null,"finish_reason":`...)
	if finish == "" {
		s.out = append(s.out, "null"...)
	} else {
		s.out = append(s.out, '"')
		s.out = append(s.out, finish...)
		s.out = append(s.out, '"')
	}
	s.out = append(s.out, "}]}"...)
	s.ends = append(s.ends, len(s.out))
}

// Close implements provider.Stream.
func (s *Stream) Close() error {
	if s.rd != nil {
		provider.PutSSEReader(s.rd)
		s.rd = nil
	}
	if s.err == nil {
		s.err = io.EOF
	}
	s.ends, s.next = s.ends[:0], 0
	if s.closer != nil {
		c := s.closer
		s.closer = nil
		return c.Close()
	}
	return nil
}
