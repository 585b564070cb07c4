package telemetry

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/usage"
)

// ScopeName is the instrumentation scope of the gateway's spans.
const ScopeName = "github.com/caddy-ai-gateway/caddy-ai-gateway"

// maxContent bounds the prompt or completion text kept on a span when
// content capture is on.
const maxContent = 64 << 10

// Upstream describes a configured provider for its spans.
type Upstream struct {
	// Name is gen_ai.provider.name (see ProviderName).
	Name string
	// Address and Port are server.address and server.port.
	Address string
	Port    int
}

// UpstreamOf returns the Upstream of a provider of type typ at baseURL.
func UpstreamOf(typ, baseURL string) Upstream {
	u := Upstream{Name: ProviderName(typ)}
	pu, err := url.Parse(baseURL)
	if err != nil || pu.Host == "" {
		return u
	}
	u.Address = pu.Hostname()
	if p := pu.Port(); p != "" {
		u.Port, _ = strconv.Atoi(p)
	} else if pu.Scheme == "https" {
		u.Port = 443
	} else {
		u.Port = 80
	}
	return u
}

// Tracer traces the gateway's requests; it implements gateway.Telemetry.
//
// A request whose context holds a span (Caddy's tracing directive) is
// traced with that span's tracer provider, as its child, so the gateway's
// spans leave through Caddy's exporter. Otherwise the Tracer's own
// provider (the telemetry block, OTEL_EXPORTER_OTLP_*) traces it,
// continuing the client's W3C traceparent; with no own provider such a
// request is not traced.
type Tracer struct {
	// Own is the gateway's own tracer provider; nil follows Caddy's only.
	Own trace.TracerProvider
	// Capture records prompts and completions (gen_ai.input.messages,
	// gen_ai.output.messages). Off by default: they hold user data.
	Capture bool
	// Upstreams by configured provider name.
	Upstreams map[string]Upstream
	// Pricing prices the usage on the request span (ai_gateway.cost_usd);
	// nil records no cost.
	Pricing *usage.Pricing

	own     trace.Tracer
	lean    *otlpTracer // own's, when Own is an OTLPProvider
	ownOnce sync.Once
	last    atomic.Pointer[scoped] // Caddy's provider and its tracer
	prop    propagation.TraceContext
}

type scoped struct {
	tp trace.TracerProvider
	t  trace.Tracer
}

var _ gateway.Telemetry = (*Tracer)(nil)

// The span kinds as start options, made once (each WithSpanKind
// allocates).
var (
	kindInternal = trace.WithSpanKind(trace.SpanKindInternal)
	kindServer   = trace.WithSpanKind(trace.SpanKindServer)
	kindClient   = trace.WithSpanKind(trace.SpanKindClient)
)

// tracer returns the tracer of tp, cached for the provider seen last.
func (t *Tracer) tracer(tp trace.TracerProvider) trace.Tracer {
	if s := t.last.Load(); s != nil && s.tp == tp {
		return s.t
	}
	s := &scoped{tp: tp, t: tp.Tracer(ScopeName)}
	t.last.Store(s)
	return s.t
}

// Start implements gateway.Telemetry.
func (t *Tracer) Start(x *gateway.Exchange, keyAt, keyDone time.Time) gateway.Trace {
	ctx := x.Context()
	var tr trace.Tracer
	kind := kindInternal
	if parent := trace.SpanFromContext(ctx); parent.SpanContext().IsValid() {
		tr = t.tracer(parent.TracerProvider())
	} else if t.Own != nil {
		t.ownOnce.Do(func() {
			if p, ok := t.Own.(*OTLPProvider); ok {
				t.lean = p.tracer(ScopeName)
			}
			t.own = t.Own.Tracer(ScopeName)
		})
		if h := x.Request().Header; len(h["Traceparent"]) > 0 {
			ctx = t.prop.Extract(ctx, propagation.HeaderCarrier(h))
		}
		if t.lean != nil {
			return t.startLean(x, trace.SpanContextFromContext(ctx), keyAt)
		}
		tr = t.own
		kind = kindServer
	} else {
		return nil
	}
	rt := &requestTrace{t: t, tr: tr, x: x, op: OperationName(x.Info.Op)}
	rt.finishReasons = rt.finishBuf[:0]
	// The spans' attributes are all set when they end, in one call: the
	// span then holds one slice of exactly their number (the samplers
	// here decide on the trace id and the parent alone).
	var span trace.Span
	if keyAt.IsZero() {
		rt.ctx, span = tr.Start(ctx, requestSpanName(rt.op), kind)
	} else {
		// The request span begins with the request, before the key check.
		rt.ctx, span = tr.Start(ctx, requestSpanName(rt.op), kind, trace.WithTimestamp(keyAt))
	}
	rt.span = span
	if x.Key != nil {
		rt.keyAt = keyAt // the admission's span begins with the key check
	}
	return rt
}

// startLean begins x's trace with the gateway's OTLPProvider: the request
// span and the spans of its phases are recorded from requestTrace's own
// fields, without a span object each.
func (t *Tracer) startLean(x *gateway.Exchange, parent trace.SpanContext, keyAt time.Time) gateway.Trace {
	rt := &requestTrace{t: t, x: x, op: OperationName(x.Info.Op), lean: t.lean}
	rt.finishReasons = rt.finishBuf[:0]
	if keyAt.IsZero() {
		keyAt = time.Now()
	}
	rt.root = spanData{sc: t.lean.p.spanContext(parent), parent: parent, name: requestSpanName(rt.op), kind: trace.SpanKindServer, start: keyAt}
	rt.unsampled = !rt.root.sc.IsSampled()
	if x.Key != nil {
		rt.keyAt = keyAt
	}
	return rt
}

// requestSpanName is the request span's name for an operation name,
// without a concatenation per request for the operations the gateway
// serves.
func requestSpanName(op string) string {
	switch op {
	case opChat:
		return spanChat
	case opTextCompletion:
		return spanTextCompletion
	case opEmbeddings:
		return spanEmbeddings
	}
	return "ai_gateway " + op
}

var (
	spanChat           = "ai_gateway " + opChat
	spanTextCompletion = "ai_gateway " + opTextCompletion
	spanEmbeddings     = "ai_gateway " + opEmbeddings
)

// requestTrace is one request's spans; it is the request's tap.
type requestTrace struct {
	t    *Tracer
	tr   trace.Tracer
	x    *gateway.Exchange
	op   string
	ctx  context.Context // carries the request span
	span trace.Span
	// keyAt is when the key check began, the admission span's start.
	keyAt time.Time

	// With the gateway's OTLPProvider (lean): the request span and the
	// current phase's, recorded from here; unsampled records nothing.
	lean       *otlpTracer
	root       spanData
	phase      phaseSpan
	endPhaseFn func(*openai.Error)
	unsampled  bool

	attempts int
	// The attempt that answered, open until the reply ends, what it was
	// started with, and what the reply said.
	answer        trace.Span
	answerAt      attemptOf
	respID        string
	respModel     string
	finishReasons []string
	finishBuf     [2]string
	out           []byte // completion text, when captured

	// The request's gen_ai.request.* parameters beyond the model, read
	// once from the client's body by the first attempt.
	params   bool
	temp     float64
	topP     float64
	hasTemp  bool
	hasTopP  bool
	inputMsg string
}

// attrBuf holds the attributes End sets (the spans copy them), pooled
// across requests.
type attrBuf [24]attribute.KeyValue

var attrBufs = sync.Pool{New: func() any { return new(attrBuf) }}

// attemptOf is what an attempt's span was started for.
type attemptOf struct {
	prov, model string
	n           int
}

// Phase implements gateway.Trace. The admission's span begins with the
// key check: one span for the key check and the limits.
func (rt *requestTrace) Phase(name string) func(*openai.Error) {
	var at time.Time
	if name == "admission" {
		at, rt.keyAt = rt.keyAt, time.Time{}
	}
	if rt.lean != nil {
		return rt.leanPhase(name, at)
	}
	var span trace.Span
	if at.IsZero() {
		_, span = rt.tr.Start(rt.ctx, name)
	} else {
		_, span = rt.tr.Start(rt.ctx, name, trace.WithTimestamp(at))
	}
	return func(oerr *openai.Error) {
		if oerr != nil {
			span.SetAttributes(AttrErrorType.String(errorType(oerr)))
			span.SetStatus(codes.Error, oerr.Code)
		}
		span.End()
	}
}

// leanPhase begins a phase's span in rt.phase (phases run one after
// another) and returns rt.endPhase, bound once per request.
func (rt *requestTrace) leanPhase(name string, at time.Time) func(*openai.Error) {
	if rt.unsampled {
		return noPhase
	}
	if at.IsZero() {
		at = time.Now()
	}
	rt.phase = phaseSpan{sid: rt.lean.p.spanID(rt.root.sc.TraceID()), name: name, start: at}
	if rt.endPhaseFn == nil {
		rt.endPhaseFn = rt.endPhase
	}
	return rt.endPhaseFn
}

func (rt *requestTrace) endPhase(oerr *openai.Error) {
	ph := &rt.phase
	sc := rt.root.sc.WithSpanID(ph.sid)
	d := spanData{sc: sc, parent: rt.root.sc, name: ph.name, kind: trace.SpanKindInternal, start: ph.start, end: time.Now()}
	var attrs [1]attribute.KeyValue
	n := 0
	if oerr != nil {
		attrs[0], n = AttrErrorType.String(errorType(oerr)), 1
		d.setStatus(codes.Error, oerr.Code)
	}
	rt.lean.record(&d, attrs[:n])
	*ph = phaseSpan{}
}

// phaseSpan is the phase under way: its span id, name and start.
type phaseSpan struct {
	sid   trace.SpanID
	name  string
	start time.Time
}

func noPhase(*openai.Error) {}
func noAttempt(error)       {}

func errorType(oerr *openai.Error) string {
	if oerr.Code != "" {
		return oerr.Code
	}
	if oerr.Type != "" {
		return oerr.Type
	}
	return strconv.Itoa(oerr.Status)
}

// readParams reads the request's gen_ai.request.* parameters beyond the
// model from the OpenAI view (ParseRequest read them), once.
func (rt *requestTrace) readParams() {
	if rt.params {
		return
	}
	rt.params = true
	req := rt.x.Req.OpenAI
	rt.temp, rt.hasTemp = req.Temperature, req.HasTemperature
	rt.topP, rt.hasTopP = req.TopP, req.HasTopP
	if rt.t.Capture {
		rt.inputMsg = inputMessages(rt.x.Req)
	}
}

// attemptAttrs appends an attempt span's request-side attributes to dst.
// It only reads rt's fields the first attempt set, so a losing hedged
// attempt may end (and call it) on another goroutine.
func (rt *requestTrace) attemptAttrs(dst []attribute.KeyValue, a attemptOf) []attribute.KeyValue {
	up := rt.t.Upstreams[a.prov]
	name := up.Name
	if name == "" {
		name = a.prov
	}
	req := rt.x.Req.OpenAI
	dst = append(dst,
		AttrOperationName.String(rt.op),
		AttrProviderName.String(name),
		AttrRequestModel.String(a.model),
		AttrProvider.String(a.prov),
		AttrAttempt.Int(a.n),
		AttrRequestStream.Bool(req.Stream))
	if req.MaxTokens > 0 {
		dst = append(dst, AttrRequestMaxTokens.Int64(req.MaxTokens))
	}
	if rt.hasTemp {
		dst = append(dst, AttrRequestTemperature.Float64(rt.temp))
	}
	if rt.hasTopP {
		dst = append(dst, AttrRequestTopP.Float64(rt.topP))
	}
	if rt.inputMsg != "" {
		dst = append(dst, AttrInputMessages.String(rt.inputMsg))
	}
	if up.Address != "" {
		dst = append(dst, AttrServerAddress.String(up.Address), AttrServerPort.Int(up.Port))
	}
	return dst
}

// Attempt implements gateway.Trace.
func (rt *requestTrace) Attempt(ctx context.Context, prov, model string) (context.Context, func(error)) {
	rt.attempts++
	rt.readParams()
	a := attemptOf{prov: prov, model: model, n: rt.attempts}
	// The span's parent is the request span; ctx (the request's, maybe
	// the drain's) keeps its cancellation. Its attributes are set when it
	// ends.
	var span trace.Span
	switch {
	case rt.unsampled:
		// Not recorded; the upstream still continues the trace.
		return trace.ContextWithSpanContext(ctx, rt.lean.p.spanContext(rt.root.sc)), noAttempt
	case rt.lean != nil:
		span = rt.lean.newSpan(rt.root.sc, rt.op, model, trace.SpanKindClient, time.Time{})
	default:
		_, span = rt.tr.Start(rt.ctx, rt.op+" "+model, kindClient)
	}
	return trace.ContextWithSpan(ctx, span), func(err error) {
		if err == nil {
			rt.answer, rt.answerAt = span, a
			return
		}
		et := "_OTHER"
		var pe *provider.Error
		switch {
		case errors.As(err, &pe):
			et = upstreamErrorType(pe)
		case errors.Is(err, context.Canceled):
			et = "canceled"
		case errors.Is(err, context.DeadlineExceeded):
			et = "timeout"
		}
		attrs := rt.attemptAttrs(make([]attribute.KeyValue, 0, 14), a)
		span.SetAttributes(append(attrs, AttrErrorType.String(et))...)
		span.SetStatus(codes.Error, et)
		span.End()
	}
}

// upstreamErrorType is error.type of an upstream failure: its HTTP status,
// or what kept it from answering. Never the upstream's message (it may
// echo a credential before redaction).
func upstreamErrorType(pe *provider.Error) string {
	switch pe.Kind {
	case provider.KindConnect:
		return "connect"
	case provider.KindTimeout:
		return "timeout"
	case provider.KindProtocol:
		return "invalid_response"
	}
	return strconv.Itoa(pe.Status)
}

var (
	finishKey    = []byte(`_reason":"`) // of "finish_reason":"…", found fast by its rare first byte
	msgStart     = []byte("message_start")
	msgDelta     = []byte("message_delta")
	blockDelta   = []byte("content_block_delta")
	respComplete = []byte("response.completed")
	respIncomp   = []byte("response.incomplete")
)

// Event implements gateway.Tap: it reads the response id, model and finish
// reasons (and, when captured, the text) from the stream.
func (rt *requestTrace) Event(ev *dialect.Event, f provider.Format) {
	if rt.unsampled {
		return
	}
	data := ev.Data
	if f == provider.FormatAnthropic {
		switch {
		case bytes.Equal(ev.Name, msgStart):
			r := gjson.GetManyBytes(data, "message.id", "message.model")
			rt.respID, rt.respModel = r[0].String(), r[1].String()
		case bytes.Equal(ev.Name, msgDelta):
			if s := gjson.GetBytes(data, "delta.stop_reason").String(); s != "" {
				rt.finishReasons = append(rt.finishReasons, s)
			}
		case rt.t.Capture && bytes.Equal(ev.Name, blockDelta):
			rt.appendOut(gjson.GetBytes(data, "delta.text").String())
		}
		return
	}
	if rt.x.Info.Op == openai.OpResponses {
		if bytes.Equal(ev.Name, respComplete) || bytes.Equal(ev.Name, respIncomp) {
			r := gjson.GetManyBytes(data, "response.id", "response.model", "response.status")
			rt.respID, rt.respModel = r[0].String(), r[1].String()
			rt.finishReasons = append(rt.finishReasons, r[2].String())
		}
		return
	}
	if first, finish := rt.respID == "", bytes.Contains(data, finishKey); first || finish {
		// One pass over the chunk's top level: id and model from the
		// first, the finish reasons from the one that carries them.
		seen := 0
		eachField(jsonraw.String(data), func(k, v string) bool {
			switch {
			case first && k == "id":
				rt.respID = rawString(v)
			case first && k == "model":
				rt.respModel = rt.model(v)
			case finish && k == "choices":
				rt.addFinishReasons(v)
			default:
				return true
			}
			seen++
			return seen < 3
		})
	}
	if rt.t.Capture {
		r := gjson.GetBytes(data, "choices.0.delta.content")
		if r.Type != gjson.String {
			r = gjson.GetBytes(data, "choices.0.text")
		}
		rt.appendOut(r.String())
	}
}

func (rt *requestTrace) appendOut(s string) {
	if n := maxContent - len(rt.out); n > 0 {
		rt.out = append(rt.out, s[:min(n, len(s))]...)
	}
}

// Body implements gateway.Tap.
func (rt *requestTrace) Body(b []byte, f provider.Format) []byte {
	if rt.unsampled {
		return b
	}
	// One pass over the answer's top level: id, model and the finish
	// reasons (Anthropic's stop_reason, the Responses status). It stops
	// once they are read (usage and the rest follow). A chat answer's
	// finish reasons are found by a search instead of a walk over the
	// choices' content.
	reason, want := "stop_reason", 3 // Anthropic
	chat := false
	if f != provider.FormatAnthropic {
		if rt.x.Info.Op == openai.OpResponses {
			reason = "status"
		} else {
			reason, want, chat = "", 2, true
		}
	}
	if chat {
		rt.scanFinishReasons(b)
	}
	seen := 0
	eachField(jsonraw.String(b), func(k, v string) bool {
		switch k {
		case "id":
			rt.respID = rawString(v)
		case "model":
			rt.respModel = rt.model(v)
		case "":
			return true
		case reason:
			if s := rawString(v); s != "" {
				rt.finishReasons = append(rt.finishReasons, s)
			}
		default:
			return true
		}
		seen++
		return seen < want
	})
	if !rt.t.Capture {
		return b
	}
	if f == provider.FormatAnthropic {
		gjson.GetBytes(b, "content.#.text").ForEach(func(_, v gjson.Result) bool { rt.appendOut(v.String()); return true })
		return b
	}
	if rt.x.Info.Op == openai.OpResponses {
		rt.appendOut(gjson.GetBytes(b, "output.#.content.#.text|@flatten|0").String())
		return b
	}
	c := gjson.GetBytes(b, "choices.0.message.content")
	if c.Type != gjson.String {
		c = gjson.GetBytes(b, "choices.0.text")
	}
	rt.appendOut(c.String())
	return b
}

// End implements gateway.Tap: it ends the answering attempt's span with
// what the reply said and the request span with how it ended.
func (rt *requestTrace) End(o gateway.Outcome, info *gateway.Info) {
	if rt.unsampled {
		return
	}
	if rt.lean != nil {
		rt.endLean(o, info)
		return
	}
	buf := attrBufs.Get().(*attrBuf)
	defer func() {
		clear(buf[:]) // keep no request's strings alive
		attrBufs.Put(buf)
	}()
	if s := rt.answer; s != nil {
		attrs, failed := rt.answerAttrs(buf[:0], o, info)
		if failed != "" {
			s.SetStatus(codes.Error, failed)
		}
		s.SetAttributes(attrs...)
		s.End()
	}
	attrs, failed := rt.requestAttrs(buf[:0], o, info)
	if failed != "" {
		rt.span.SetStatus(codes.Error, failed)
	}
	rt.span.SetAttributes(attrs...)
	rt.span.End()
}

// endLean is End with the OTLPProvider: the attributes are built on the
// stack and encoded from there (no copy into the spans, no write barrier
// for a pooled buffer).
func (rt *requestTrace) endLean(o gateway.Outcome, info *gateway.Info) {
	var buf [24]attribute.KeyValue
	if s, ok := rt.answer.(*otlpSpan); ok {
		attrs, failed := rt.answerAttrs(buf[:0], o, info)
		s.endWith(attrs, failed)
	}
	attrs, failed := rt.requestAttrs(buf[:0], o, info)
	d := &rt.root
	if failed != "" {
		d.setStatus(codes.Error, failed)
	}
	d.end = time.Now()
	rt.lean.record(d, attrs)
}

// answerAttrs appends the answering attempt span's attributes to dst: what
// it was asked and what the reply said; failed is its error status.
func (rt *requestTrace) answerAttrs(dst []attribute.KeyValue, o gateway.Outcome, info *gateway.Info) (attrs []attribute.KeyValue, failed string) {
	u := info.Usage
	attrs = rt.attemptAttrs(dst, rt.answerAt)
	if rt.respID != "" {
		attrs = append(attrs, AttrResponseID.String(rt.respID))
	}
	if rt.respModel != "" {
		attrs = append(attrs, AttrResponseModel.String(rt.respModel))
	}
	if len(rt.finishReasons) > 0 {
		attrs = append(attrs, finishReasonsAttr(rt.finishReasons))
	}
	if u.Known {
		attrs = append(attrs, AttrInputTokens.Int64(u.InputTokens), AttrOutputTokens.Int64(u.OutputTokens),
			AttrCacheReadTokens.Int64(u.CachedTokens))
	}
	if rt.t.Capture && len(rt.out) > 0 {
		attrs = append(attrs, AttrOutputMessages.String(outputMessages(rt.out, rt.finishReasons)))
	}
	if o != gateway.OutcomeCompleted {
		failed = o.String()
		attrs = append(attrs, AttrErrorType.String(failed))
	}
	return attrs, failed
}

// requestAttrs appends the request span's attributes to dst: what the
// request was and how it ended; failed is its error status. The
// provider's name, the response model and the tokens are on the answering
// attempt's span; the request span has them only when no attempt answered
// (a cache hit).
func (rt *requestTrace) requestAttrs(dst []attribute.KeyValue, o gateway.Outcome, info *gateway.Info) (attrs []attribute.KeyValue, failed string) {
	u := info.Usage
	answered := rt.answer != nil
	attrs = append(dst,
		AttrOperationName.String(rt.op),
		AttrRequestModel.String(info.Model),
		AttrRoute.String(info.Route))
	if info.Key != "" {
		attrs = append(attrs, AttrKey.String(info.Key))
	}
	attrs = append(attrs, AttrOutcome.String(o.String()), AttrStatus.Int(info.Status), AttrAttempts.Int(info.Attempts))
	if info.Provider != "" {
		attrs = append(attrs, AttrProvider.String(info.Provider))
	}
	if rt.respModel != "" && !answered {
		attrs = append(attrs, AttrResponseModel.String(rt.respModel))
	}
	if u.Known {
		if !answered {
			attrs = append(attrs, AttrInputTokens.Int64(u.InputTokens), AttrOutputTokens.Int64(u.OutputTokens),
				AttrCacheReadTokens.Int64(u.CachedTokens))
		}
		if rt.t.Pricing != nil && info.Cache != "hit" && info.Cache != "semantic-hit" { // a hit spends nothing
			if p, ok := rt.t.Pricing.Lookup(info.UpstreamModel, info.Model); ok {
				attrs = append(attrs, AttrCostUSD.Float64(float64(p.CostMicros(u))/1e6))
			}
		}
	}
	if info.Cache != "" {
		attrs = append(attrs, AttrCache.String(info.Cache))
	}
	if info.RAG != "" {
		attrs = append(attrs, AttrRAG.String(info.RAG))
	}
	if info.Guardrails != "" {
		attrs = append(attrs, AttrGuardrail.String(info.Guardrails))
	}
	switch {
	case info.Status >= 500 || o == gateway.OutcomeStreamBroken:
		failed = info.Limited
		if failed == "" {
			failed = o.String()
		}
		attrs = append(attrs, AttrErrorType.String(failed))
	case info.Limited != "":
		attrs = append(attrs, AttrErrorType.String(info.Limited))
	}
	return attrs, failed
}

// commonFinishReasons holds gen_ai.response.finish_reasons of one
// well-known reason, made once (a string slice attribute copies its
// slice).
var commonFinishReasons = func() map[string]attribute.KeyValue {
	m := make(map[string]attribute.KeyValue, len(wellKnown))
	for r := range wellKnown {
		m[r] = AttrFinishReasons.StringSlice([]string{r})
	}
	return m
}()

func finishReasonsAttr(fr []string) attribute.KeyValue {
	if len(fr) == 1 {
		if kv, ok := commonFinishReasons[fr[0]]; ok {
			return kv
		}
	}
	return AttrFinishReasons.StringSlice(fr)
}

// inputMessages renders the prompt as gen_ai.input.messages: the
// conventions' messages of role and text parts.
func inputMessages(req *dialect.Request) string {
	body := req.OpenAI.Body
	if req.Native != nil {
		body = req.Native
	}
	var b strings.Builder
	b.WriteByte('[')
	n := 0
	add := func(role, text string) {
		if b.Len() > maxContent {
			return
		}
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		b.WriteString(`{"role":`)
		b.WriteString(strconv.Quote(role))
		b.WriteString(`,"parts":[{"type":"text","content":`)
		b.WriteString(jsonString(text))
		b.WriteString(`}]}`)
	}
	r := gjson.GetManyBytes(body, "system", "messages", "input", "prompt")
	if r[0].Exists() {
		add("system", contentText(r[0]))
	}
	switch {
	case r[1].IsArray():
		r[1].ForEach(func(_, m gjson.Result) bool {
			add(m.Get("role").String(), contentText(m.Get("content")))
			return true
		})
	case r[2].IsArray():
		r[2].ForEach(func(_, m gjson.Result) bool {
			add(m.Get("role").String(), contentText(m.Get("content")))
			return true
		})
	case r[2].Exists():
		add("user", r[2].String())
	case r[3].Exists():
		add("user", contentText(r[3]))
	default:
		return ""
	}
	b.WriteByte(']')
	return b.String()
}

// contentText is the text of a message's content: a string, or the text
// of its parts.
func contentText(c gjson.Result) string {
	if !c.IsArray() {
		return c.String()
	}
	var sb strings.Builder
	c.ForEach(func(_, p gjson.Result) bool {
		if t := p.Get("text"); t.Exists() {
			sb.WriteString(t.String())
		} else if p.Type == gjson.String {
			sb.WriteString(p.String())
		}
		return true
	})
	return sb.String()
}

func outputMessages(text []byte, finish []string) string {
	fr := ""
	if len(finish) > 0 {
		fr = finish[0]
	}
	return `[{"role":"assistant","parts":[{"type":"text","content":` + jsonString(string(text)) + `}],"finish_reason":` + strconv.Quote(fr) + `}]`
}

// jsonString quotes s as a JSON string.
func jsonString(s string) string {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, `\u00`...)
			b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return string(append(b, '"'))
}

// scanFinishReasons adds the string value of each "finish_reason" member
// of a chat answer. Only the choices have one, and a quote inside a JSON
// string is escaped, so every match is a member.
func (rt *requestTrace) scanFinishReasons(b []byte) {
	const name = `"finish` // before finishKey
	for i := 0; ; {
		j := bytes.Index(b[i:], finishKey)
		if j < 0 {
			return
		}
		j += i
		v := j + len(finishKey) - 1 // the value's opening quote
		if j < len(name) || string(b[j-len(name):j]) != name {
			i = v
			continue
		}
		end := jsonraw.SkipString(jsonraw.String(b), v)
		if s := rawString(jsonraw.String(b[v:end])); s != "" {
			rt.finishReasons = append(rt.finishReasons, s)
		}
		i = end
	}
}

// addFinishReasons adds the finish_reason of each choice of the raw JSON
// array choices.
func (rt *requestTrace) addFinishReasons(choices string) {
	jsonraw.Elems(choices, func(c string) bool {
		if s := rawString(jsonraw.Field(c, "finish_reason")); s != "" {
			rt.finishReasons = append(rt.finishReasons, s)
		}
		return true
	})
}

// model is the response model of a raw JSON string: without a copy when
// it is the model the answering attempt asked for, as it most often is.
func (rt *requestTrace) model(raw string) string {
	if m := rt.answerAt.model; len(raw) == len(m)+2 && raw[1:len(raw)-1] == m {
		return m
	}
	return rawString(raw)
}
