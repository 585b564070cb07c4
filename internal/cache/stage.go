package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/usage"
)

// Response headers.
const (
	HeaderCacheStatus = "Cache-Status" // RFC 9211
	HeaderCache       = "X-Ai-Gateway-Cache"
	HeaderSavedTokens = "X-Ai-Gateway-Cache-Saved-Tokens"
	cacheName         = "ai_gateway"
)

// The verdicts in gateway.Info.Cache and the X-AI-Gateway-Cache header.
const (
	VerdictHit         = "hit"
	VerdictSemanticHit = "semantic-hit"
	VerdictMiss        = "miss"
	VerdictBypass      = "bypass"
	VerdictRefresh     = "refresh"
)

// Defaults.
const (
	DefaultTTL          = time.Hour
	DefaultMaxEntrySize = 1 << 20
	DefaultMaxMemory    = 256 << 20
	DefaultLockTTL      = 10 * time.Second
	DefaultWait         = 30 * time.Second
	DefaultStoreTimeout = 500 * time.Millisecond
)

// Config configures a Stage. Zero values take the defaults.
type Config struct {
	Store Store
	// Flights and Stats outlive a configuration (shared by the caller).
	Flights *Flights
	Stats   *Stats
	TTL     time.Duration
	// MaxEntrySize bounds a recorded answer in bytes: a larger one is
	// served, not stored.
	MaxEntrySize int
	// Shared puts every key's entries in one namespace (a key's own
	// cache namespace still wins).
	Shared bool
	// Routes finds the route of a fallback that answered.
	Routes  *route.Table
	Pricing *usage.Pricing
	// LockTTL bounds the Redis coalescing lock; a gateway waiting on
	// another's lock goes upstream itself after it.
	LockTTL time.Duration
	// Wait bounds how long a follower waits for its leader's first byte.
	Wait time.Duration
	// StoreTimeout bounds one store operation; a slower store is bypassed.
	StoreTimeout time.Duration
	// Semantic, when set, looks a request up by meaning after an exact
	// miss.
	Semantic *Semantic
	// Masked: the stage runs after guardrails that mask personal data
	// (their privacy rules), so that the key is over the masked request
	// and an entry holds the upstream's answer, which has the placeholders
	// only; each request's own restorer puts its values back in a replay.
	// A request the guardrails sent unmasked (a route rule to a local
	// model) is not cached: its answer may hold the values.
	Masked bool
	Logger *zap.Logger
}

// Stats counts what the cache did, across configurations.
type Stats struct {
	Hits, SemanticHits, Misses, Bypasses, Stored atomic.Int64
	// Coalesced counts followers served by a leader's answer.
	Coalesced atomic.Int64
	// SavedTokens and SavedMicros are the usage hits did not spend.
	SavedTokens, SavedMicros atomic.Int64
	// StoreErrors counts failed store operations (each bypassed).
	StoreErrors atomic.Int64
	storeDown   atomic.Bool
}

// Stage is the response cache in the gateway's pipeline: it answers a
// request from a stored entry or from an identical request in flight, or
// records the answer of the request that goes upstream.
type Stage struct {
	cfg      Config
	versions []Versioned
}

// Versioned is a later stage whose output has a version (a RAG
// collection's): it is part of the key, so that a new version misses.
type Versioned interface {
	Version() uint64
}

// FoldVersions makes the versions of vs part of every key. Call it before
// the stage serves.
func (s *Stage) FoldVersions(vs ...Versioned) { s.versions = append(s.versions, vs...) }

// New returns a stage.
func New(cfg Config) *Stage {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.MaxEntrySize <= 0 {
		cfg.MaxEntrySize = DefaultMaxEntrySize
	}
	if cfg.LockTTL <= 0 {
		cfg.LockTTL = DefaultLockTTL
	}
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultWait
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = DefaultStoreTimeout
	}
	if cfg.Flights == nil {
		cfg.Flights = NewFlights()
	}
	if cfg.Stats == nil {
		cfg.Stats = new(Stats)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Pricing == nil {
		cfg.Pricing = usage.DefaultPricing()
	}
	return &Stage{cfg: cfg}
}

// Name implements gateway.Stage.
func (s *Stage) Name() string { return "cache" }

// control is what the client's Cache-Control asks.
type control struct {
	noStore, noCache bool
	maxAge           time.Duration // < 0: any age
}

func parseControl(h http.Header) control {
	c := control{maxAge: -1}
	for _, v := range h.Values("Cache-Control") {
		for _, d := range strings.Split(v, ",") {
			d = strings.ToLower(strings.TrimSpace(d))
			switch {
			case d == "no-store":
				c.noStore = true
			case d == "no-cache":
				c.noCache = true
			case strings.HasPrefix(d, "max-age="):
				if n, err := strconv.ParseInt(strings.Trim(d[len("max-age="):], `"`), 10, 64); err == nil && n >= 0 {
					c.maxAge = time.Duration(min(n, 1<<32)) * time.Second
				}
			}
		}
	}
	return c
}

// namespace is where a key's entries live: the key's own cache namespace,
// else "shared" under a shared cache, else the key's name ("" for
// anonymous clients of an open gateway).
func (s *Stage) namespace(k *auth.Key) string {
	switch {
	case k != nil && k.Policy.Cache != "":
		return "ns:" + k.Policy.Cache
	case s.cfg.Shared:
		return "shared"
	case k != nil:
		return "key:" + k.Name
	}
	return "anonymous"
}

// endpoints are the endpoint names in keys, "<format>:<operation>".
var endpoints = func() (e [2][5]string) {
	for f := range e {
		for op := range e[f] {
			e[f][op] = provider.Format(f).String() + ":" + openai.Op(op).String()
		}
	}
	return e
}()

func endpointName(f provider.Format, op openai.Op) string {
	if int(f) < len(endpoints) && int(op) < len(endpoints[f]) {
		return endpoints[f][op]
	}
	return f.String() + ":" + op.String()
}

// routeParts name a route and what it sends model to.
func routeParts(rt *route.Route, model string) []string {
	parts := make([]string, 0, 1+len(rt.Targets))
	parts = append(parts, rt.Pattern)
	for i := range rt.Targets {
		t := &rt.Targets[i]
		parts = append(parts, t.Provider+"\x00"+t.UpstreamModel(model))
	}
	return parts
}

// request is what the stage knows of one request.
type request struct {
	x        *gateway.Exchange
	ns       string
	endpoint string
	digest   Digest
	ref      Ref
	stream   bool
	ctl      control
	stale    bool // an entry older than the client's max-age
	semantic *semanticQuery
	extra    []string // what the digest folds in besides the body
	extraBuf [4]string

	// What Peek found before the admission: looked is true once it read
	// the store (lookErr when that failed), entry is the hit it found and
	// at is when.
	looked  bool
	lookErr error
	entry   *Entry
	at      time.Time
}

// Peek implements gateway.Peeker: it looks the request up before the
// admission, so that a hit is admitted on its requests per minute only.
// With a shared store (Redis) the lookup is the same round trip that Run
// would make, moved before the admission; it is skipped when an identical
// request is in flight here (the request then follows it in Run, after
// the full admission), so that a burst of identical requests still reads
// the store once per gateway.
func (s *Stage) Peek(x *gateway.Exchange) bool {
	if s.cfg.Masked {
		return false // the key is over the request the guardrails mask later
	}
	ctl := parseControl(x.RequestHeader())
	if ctl.noStore || ctl.noCache {
		return false
	}
	r := s.newRequest(x, ctl)
	x.Peeked = r
	if _, shared := s.cfg.Store.(Locker); shared && s.cfg.Flights.has(r.ref.Key) {
		return false
	}
	e, err := s.get(x.Context(), r.ref)
	r.looked, r.lookErr = true, err
	if err != nil || e == nil {
		return false
	}
	now := time.Now()
	if r.ctl.maxAge >= 0 && e.Age(now) > r.ctl.maxAge {
		r.stale = true
		return false
	}
	if !answers(e, r.stream) {
		return false
	}
	r.entry, r.at = e, now
	return true
}

// Run implements gateway.Stage.
func (s *Stage) Run(x *gateway.Exchange) (*gateway.Reply, *openai.Error) {
	ctl := parseControl(x.RequestHeader())
	h := x.Header()
	if ctl.noStore || s.cfg.Masked && strings.HasPrefix(x.Info.Guardrails, "routed=") {
		s.cfg.Stats.Bypasses.Add(1)
		x.Info.Cache = VerdictBypass
		h.Set(HeaderCacheStatus, cacheName+"; fwd=bypass")
		h.Set(HeaderCache, VerdictBypass)
		return nil, nil
	}
	r, ok := x.Peeked.(*request)
	switch {
	case !ok:
		r = s.newRequest(x, ctl)
	case r.entry != nil:
		if reply := s.hit(r, r.entry, r.at); reply != nil {
			return reply, nil
		}
		// A stored body that converts to no events (never recorded so):
		// looked up again below.
		r.looked, r.entry = false, nil
	case r.lookErr != nil:
		s.bypass(r)
		return nil, nil
	}
	return s.serve(r, true)
}

// bypass sends r upstream past an unavailable store.
func (s *Stage) bypass(r *request) {
	s.cfg.Stats.Bypasses.Add(1)
	r.x.Info.Cache = VerdictBypass
	h := r.x.Header()
	h.Set(HeaderCacheStatus, cacheName+"; fwd=bypass; detail=store-unavailable")
	h.Set(HeaderCache, VerdictBypass)
}

func (s *Stage) newRequest(x *gateway.Exchange, ctl control) *request {
	req := x.Req
	body := req.OpenAI.Body
	if req.Native != nil {
		body = req.Native
	}
	r := &request{x: x, ctl: ctl, stream: req.OpenAI.Stream, ns: s.namespace(x.Key),
		endpoint: endpointName(req.Format, req.OpenAI.Op)}
	extra := r.extraBuf[:0]
	if req.OpenAI.Op != openai.OpChat && r.stream {
		// Only Chat Completions answers convert between the shapes.
		extra = append(extra, "stream")
	}
	for _, v := range s.versions {
		extra = append(extra, "version:"+strconv.FormatUint(v.Version(), 10))
	}
	r.digest = DigestRequest(body, req.Header, extra...)
	r.extra = extra
	r.ref = Ref{Key: routeKey(r.ns, r.endpoint, x.Route, req.OpenAI.Model, r.digest), Namespace: r.ns, Route: x.Route.Pattern}
	return r
}

// serve looks the request up, then follows an identical request in flight
// or leads a new flight. retry is false for a follower whose leader failed.
//
// With the memory store the lookup comes first (it costs nothing) and is
// repeated once by a new leader (an identical flight may have stored its
// entry in between). With a shared store only the local leader of a key
// reads it, so that a burst of identical requests costs one round trip
// per gateway.
func (s *Stage) serve(r *request, retry bool) (*gateway.Reply, *openai.Error) {
	x, h := r.x, r.x.Header()
	lk, shared := s.cfg.Store.(Locker)
	var f *flight
	for pass := 0; ; pass++ {
		if shared || pass > 0 {
			var leader bool
			if f, leader = s.cfg.Flights.join(r.ref.Key, s.cfg.MaxEntrySize); !leader {
				return s.follow(r, f, retry)
			}
		}
		if r.ctl.noCache {
			break
		}
		if pass == 0 && r.looked {
			// Peek read the store already and missed (once: a retry reads).
			r.looked = false
			if f != nil {
				break
			}
			continue
		}
		e, err := s.get(x.Context(), r.ref)
		if err != nil {
			if f != nil {
				f.fail(errNoAnswer)
			}
			s.bypass(r)
			return nil, nil
		}
		if e != nil {
			if r.ctl.maxAge >= 0 && e.Age(time.Now()) > r.ctl.maxAge {
				r.stale = true
			} else if reply := s.hit(r, e, time.Now()); reply != nil {
				if f != nil {
					f.publishEntry(e)
				}
				return reply, nil
			}
		}
		if f != nil {
			break
		}
	}
	if f == nil {
		var leader bool
		if f, leader = s.cfg.Flights.join(r.ref.Key, s.cfg.MaxEntrySize); !leader {
			return s.follow(r, f, retry)
		}
	}
	if !r.ctl.noCache {
		if e := s.semanticLookup(r); e != nil {
			if reply := s.hitAs(r, e, time.Now(), VerdictSemanticHit); reply != nil {
				f.publishEntry(e)
				return reply, nil
			}
		}
	}
	if shared {
		if e, ok := s.waitForPeer(r, f, lk); ok {
			if reply := s.hit(r, e, time.Now()); reply != nil {
				f.publishEntry(e)
				return reply, nil
			}
		}
	}
	verdict, status := VerdictMiss, cacheName+"; fwd=uri-miss"
	switch {
	case r.ctl.noCache:
		verdict, status = VerdictRefresh, cacheName+"; fwd=request"
	case r.stale:
		status = cacheName + "; fwd=stale"
	}
	s.cfg.Stats.Misses.Add(1)
	x.Info.Cache = verdict
	h.Set(HeaderCacheStatus, status)
	h.Set(HeaderCache, verdict)
	s.lead(r, f)
	return nil, nil
}

// get reads the store, bounded by StoreTimeout; a failure is counted,
// logged once until the store answers again, and bypasses the cache.
func (s *Stage) get(ctx context.Context, ref Ref) (*Entry, error) {
	if m, ok := s.cfg.Store.(*Memory); ok {
		return m.Get(ctx, ref) // in process: nothing to time out
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	e, err := s.cfg.Store.Get(ctx, ref)
	s.storeResult(err)
	return e, err
}

func (s *Stage) storeResult(err error) {
	st := s.cfg.Stats
	if err != nil {
		st.StoreErrors.Add(1)
		if st.storeDown.CompareAndSwap(false, true) {
			s.cfg.Logger.Error("cache store unavailable: requests bypass the cache", zap.Error(err))
		}
		return
	}
	if st.storeDown.Load() && st.storeDown.CompareAndSwap(true, false) {
		s.cfg.Logger.Info("cache store is back")
	}
}

// hit answers r from e; nil when e cannot answer r's shape (a recorded
// stream of a format that does not convert to a body, or the reverse).
func (s *Stage) hit(r *request, e *Entry, now time.Time) *gateway.Reply {
	return s.hitAs(r, e, now, VerdictHit)
}

// hitAs is hit with the verdict (a hit or a semantic hit).
func (s *Stage) hitAs(r *request, e *Entry, now time.Time, verdict string) *gateway.Reply {
	reply, converted := replyFrom(e, r.stream, now)
	if reply == nil {
		return nil
	}
	if converted != nil && verdict == VerdictHit { // e is r.ref's entry
		s.keepShape(r.ref, e, converted)
	}
	x, h := r.x, r.x.Header()
	info := x.Info
	info.Cache = verdict
	info.Provider, info.UpstreamModel = e.Provider, e.Model
	s.saved(info, e.Usage)
	status := cacheName + "; hit; ttl="
	if verdict == VerdictSemanticHit {
		s.cfg.Stats.SemanticHits.Add(1)
		status = cacheName + "; hit; detail=semantic; ttl="
	} else {
		s.cfg.Stats.Hits.Add(1)
	}
	age := int64(e.Age(now) / time.Second)
	ttl := max(int64(e.Expires.Sub(now)/time.Second), 0)
	setHitHeaders(h, status, ttl, verdict, age, e.Usage.InputTokens+e.Usage.OutputTokens)
	x.AddTap(hitTap{})
	return reply
}

// setHitHeaders sets a hit's Cache-Status (status followed by ttl),
// X-AI-Gateway-Cache, Age and X-AI-Gateway-Cache-Saved-Tokens with two
// allocations: one string holding the values, one slice backing them.
func setHitHeaders(h http.Header, status string, ttl int64, verdict string, age, saved int64) {
	var buf [96]byte
	b := strconv.AppendInt(append(buf[:0], status...), ttl, 10)
	e0 := len(b)
	b = strconv.AppendInt(b, age, 10)
	e1 := len(b)
	b = strconv.AppendInt(b, saved, 10)
	all := string(b)
	vals := []string{all[:e0], verdict, all[e0:e1], all[e1:]}
	// The names are canonical already.
	h[HeaderCacheStatus] = vals[0:1:1]
	h[HeaderCache] = vals[1:2:2]
	h["Age"] = vals[2:3:3]
	h[HeaderSavedTokens] = vals[3:4:4]
}

// hitTap clears a hit's usage once the admission has settled: no upstream
// spent it (placeholders and token metrics read Info.Usage; the saved
// usage is Info.CacheSaved).
type hitTap struct{}

func (hitTap) Event(*dialect.Event, provider.Format)   {}
func (hitTap) Body(b []byte, _ provider.Format) []byte { return b }
func (hitTap) End(_ gateway.Outcome, info *gateway.Info) {
	info.Usage = openai.Usage{}
}

// saved accounts the usage a hit did not spend.
func (s *Stage) saved(info *gateway.Info, u openai.Usage) {
	info.CacheSaved = u
	price, _ := s.cfg.Pricing.Lookup(info.UpstreamModel, info.Model)
	micros := price.CostMicros(u)
	info.CacheSavedUSD = float64(micros) / 1e6
	s.cfg.Stats.SavedTokens.Add(u.InputTokens + u.OutputTokens)
	s.cfg.Stats.SavedMicros.Add(micros)
}

// answers reports whether e can answer a request of this shape (a stream
// or a body): as it is, or converted.
func answers(e *Entry, stream bool) bool {
	if stream != e.Stream && !convertible(e.Format, e.Op) {
		return false
	}
	return !stream || !e.Stream || len(e.Events) > 0
}

// replyFrom replays e in the shape asked (stream or body), with fresh ids.
// converted is the other shape when this replay converted e to it (nil
// when e was replayed as recorded or held that shape already).
func replyFrom(e *Entry, stream bool, now time.Time) (reply *gateway.Reply, converted *shape) {
	if !answers(e, stream) {
		return nil, nil
	}
	events, body := e.Events, e.Body
	var marks []bool
	switch {
	case stream && !e.Stream:
		sh := e.other
		if sh == nil {
			var usageLast bool
			sh = &shape{}
			sh.events, usageLast = chatEventsFromBody(e.Body)
			if usageLast { // the conversion knows its usage chunk: no scan
				sh.marks = make([]bool, len(sh.events))
				sh.marks[len(sh.marks)-1] = true
			}
			converted = sh
		}
		events, marks = sh.events, sh.marks
	case stream:
		marks = e.usageMarks()
	case !stream && e.Stream:
		sh := e.other
		if sh == nil {
			sh = &shape{body: chatBodyFromEvents(e.Events)}
			converted = sh
		}
		body = sh.body
	}
	paths := pathsFor(e.Format, e.Op, stream)
	if !stream {
		var sp bodySpots
		if e.Stream { // a converted body
			sp = findSpots(paths, body)
		} else {
			sp = e.bodySpots(paths)
		}
		return &gateway.Reply{Format: e.Format, Body: freshBody(sp, now.Unix(), body), Usage: e.Usage}, converted
	}
	if len(events) == 0 {
		return nil, nil
	}
	// One allocation for the reply, the replay and its freshener, one for
	// the first event and the buffer the others are written to (a replay
	// keeps every event's length).
	p := &replay{events: events[1:], usage: e.Usage, marks: marks}
	p.fresh.init(paths, now.Unix())
	size := 0
	for i := range events {
		size = max(size, len(events[i].Data))
	}
	mem := make([]byte, 2*size)
	first := events[0]
	p.buf = mem[size:size]
	p.reply = gateway.Reply{Format: e.Format, First: sse.Event{Name: first.Name, Data: p.fresh.apply(mem[:0:size], first.Data)}, Stream: p}
	return &p.reply, converted
}

// keepShape stores e again with the shape a hit converted it to, when the
// store is this process's memory: later hits in that shape replay it as
// it is, and the store weighs both shapes. An entry that would outgrow
// MaxEntrySize is left as it is (every hit in the other shape converts).
func (s *Stage) keepShape(ref Ref, e *Entry, sh *shape) {
	m, ok := s.cfg.Store.(*Memory)
	if !ok {
		return
	}
	if c := e.withShape(sh); c.Size() <= s.cfg.MaxEntrySize {
		m.Replace(ref, e, c)
	}
}

// replay streams recorded events.
type replay struct {
	reply  gateway.Reply // the reply replaying them
	fresh  freshener
	events []Event
	i      int
	buf    []byte
	usage  openai.Usage
	marks  []bool // the usage-only chunks, by index in the whole stream (First is 0)
}

// UsageOnly implements provider.UsageMarker: the event returned last is
// events[p.i-1], the stream's event p.i (First is event 0).
func (p *replay) UsageOnly() bool { return p.i < len(p.marks) && p.marks[p.i] }

func (p *replay) Next() (sse.Event, error) {
	if p.i >= len(p.events) {
		return sse.Event{}, io.EOF
	}
	ev := p.events[p.i]
	p.i++
	p.buf = p.fresh.apply(p.buf, ev.Data)
	return sse.Event{Name: ev.Name, Data: p.buf}, nil
}

func (p *replay) Close() error { return nil }

// Pending implements provider.Pender: every event (and the end) is at
// hand, so a replay is written and flushed once, after its last event.
func (p *replay) Pending() bool { return true }

// Usage implements provider.UsageReporter.
func (p *replay) Usage() openai.Usage { return p.usage }

// waitForPeer takes the store's lock of r's key for this gateway, or, when
// another gateway holds it, polls the store for that gateway's entry until
// the lock is released or expires (the caller then goes upstream). ok is
// true with the peer's entry.
func (s *Stage) waitForPeer(r *request, f *flight, lk Locker) (*Entry, bool) {
	ctx := r.x.Context()
	token := randomToken()
	deadline := time.Now().Add(s.cfg.LockTTL)
	wait := 5 * time.Millisecond
	for {
		octx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
		got, err := lk.Lock(octx, r.ref, token, s.cfg.LockTTL)
		cancel()
		s.storeResult(err)
		if err != nil {
			return nil, false // Redis down: each gateway on its own
		}
		if got {
			r.x.AddTap(unlockTap{s: s, lk: lk, ref: r.ref, token: token})
			return nil, false
		}
		for {
			if time.Now().After(deadline) || !sleep(ctx, wait) {
				return nil, false
			}
			wait = min(wait*2, 100*time.Millisecond)
			octx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
			e, locked, err := lk.Poll(octx, r.ref)
			cancel()
			s.storeResult(err)
			if err != nil {
				return nil, false
			}
			if e != nil {
				return e, true
			}
			if !locked {
				break // released without an entry: try to lead
			}
		}
	}
}

func randomToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// unlockTap releases the Redis lock when the leader's request ends.
type unlockTap struct {
	s     *Stage
	lk    Locker
	ref   Ref
	token string
}

func (t unlockTap) Event(*dialect.Event, provider.Format)   {}
func (t unlockTap) Body(b []byte, _ provider.Format) []byte { return b }
func (t unlockTap) End(gateway.Outcome, *gateway.Info) {
	ctx, cancel := context.WithTimeout(context.Background(), t.s.cfg.StoreTimeout)
	defer cancel()
	_ = t.lk.Unlock(ctx, t.ref, t.token)
}

// lead makes r the flight's leader: its upstream call runs on the flight's
// context (it outlives r's client while followers listen), its reply
// becomes the flight's, and a complete answer is stored.
func (s *Stage) lead(r *request, f *flight) {
	x := r.x
	client := x.Context()
	ctx, cancel := context.WithCancel(context.WithoutCancel(client))
	f.mu.Lock()
	f.cancel = cancel
	f.mu.Unlock()
	stop := context.AfterFunc(client, f.leave)
	x.SetContext(ctx)
	t := &leaderTap{s: s, r: r, f: f, stop: stop, cancel: cancel, h: x.Header()}
	x.OnReply(func(reply *gateway.Reply) *gateway.Reply {
		info := x.Info
		first, st := f.publish(reply.Format, reply.Body, reply.Usage, reply.Stream, reply.First, info.Provider, info.UpstreamModel)
		if st != nil {
			l := st.(*listener)
			l.ctx, l.commit, l.finish = client, s.commitStream(r, info), true
			reply.First, reply.Stream = first, l
		}
		t.replied = true
		return reply
	})
	x.AddTap(t)
}

// leaderTap ends the leader's part in its flight.
type leaderTap struct {
	s       *Stage
	r       *request
	f       *flight
	stop    func() bool
	cancel  context.CancelFunc
	h       http.Header
	replied bool
}

func (t *leaderTap) Event(*dialect.Event, provider.Format) {}

func (t *leaderTap) Body(b []byte, _ provider.Format) []byte {
	if len(b) <= t.s.cfg.MaxEntrySize {
		t.h.Set(HeaderCacheStatus, t.h.Get(HeaderCacheStatus)+"; stored")
	}
	return b
}

func (t *leaderTap) End(o gateway.Outcome, info *gateway.Info) {
	f := t.f
	switch {
	case !t.replied:
		f.fail(errNoAnswer)
	case !f.stream:
		if o == gateway.OutcomeCompleted {
			t.s.commit(t.r, f, info)
		}
		f.remove()
	}
	if t.stop() {
		f.leave()
	}
	f.mu.Lock()
	finished := f.done || f.err != nil
	f.mu.Unlock()
	if finished {
		t.cancel()
	}
}

// commitStream returns the commit of a stream flight, run by the listener
// that read its end.
func (s *Stage) commitStream(r *request, info *gateway.Info) func(*flight) {
	return func(f *flight) {
		s.commit(r, f, info)
		f.remove()
		f.mu.Lock()
		cancel := f.cancel
		f.mu.Unlock()
		if cancel != nil {
			cancel()
		}
	}
}

// commit stores the flight's whole answer, under the route that answered
// (a fallback's answer under the fallback's route), unless it is over
// MaxEntrySize.
func (s *Stage) commit(r *request, f *flight, info *gateway.Info) {
	f.mu.Lock()
	e := &Entry{Format: f.format, Op: r.x.Req.OpenAI.Op, Stream: f.stream, Body: f.body, Events: f.events, Usage: f.usage,
		Provider: f.provider, Model: f.model, Namespace: r.ns}
	size := f.size
	f.mu.Unlock()
	if size > s.cfg.MaxEntrySize {
		return
	}
	ref, ok := s.answeredRef(r, e.Provider, e.Model)
	if !ok {
		return
	}
	e.Route = ref.Route
	now := time.Now()
	e.Stored, e.Expires = now, now.Add(s.cfg.TTL)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
	defer cancel()
	err := s.cfg.Store.Set(ctx, ref, e)
	s.storeResult(err)
	if err == nil {
		s.cfg.Stats.Stored.Add(1)
		s.indexSemantic(r, ref, e)
	}
}

// answeredRef is the ref to store an answer under: the request's own when
// a target of its route answered, else the fallback route whose target
// did; ok is false when none matches.
func (s *Stage) answeredRef(r *request, prov, model string) (Ref, bool) {
	rt := r.x.Route
	req := r.x.Req.OpenAI
	if servedBy(rt, req.Model, prov, model) {
		return r.ref, true
	}
	if s.cfg.Routes == nil {
		return Ref{}, false
	}
	seen := map[*route.Route]bool{rt: true}
	queue := []*route.Route{rt}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, fb := range cur.Fallbacks {
			next, ok := s.cfg.Routes.Lookup(fb)
			if !ok || seen[next] {
				continue
			}
			seen[next] = true
			if servedBy(next, fb, prov, model) {
				return Ref{Key: routeKey(r.ns, r.endpoint, next, fb, r.digest), Namespace: r.ns, Route: next.Pattern}, true
			}
			queue = append(queue, next)
		}
	}
	return Ref{}, false
}

func servedBy(rt *route.Route, requested, prov, model string) bool {
	for i := range rt.Targets {
		if t := &rt.Targets[i]; t.Provider == prov && t.UpstreamModel(requested) == model {
			return true
		}
	}
	return false
}

// follow answers r with its flight's answer: live from the leader's
// stream, or its body, converted to r's shape where needed. When the
// leader gets no answer, r leads a new flight once (retry), else goes
// upstream on its own; likewise after waiting Wait for a first byte.
func (s *Stage) follow(r *request, f *flight, retry bool) (*gateway.Reply, *openai.Error) {
	x := r.x
	ctx := x.Context()
	stop := context.AfterFunc(ctx, f.leave)
	leave := func() {
		if stop() {
			f.leave()
		}
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.Wait)
	ok := f.waitReply(wctx)
	timedOut := wctx.Err() != nil
	cancel()
	if !ok {
		leave()
		if ctx.Err() != nil {
			return nil, nil // the attempt loop sees the client gone
		}
		if retry && !timedOut {
			return s.serve(r, false)
		}
		return s.alone(r)
	}
	f.mu.Lock()
	format, stream, prov, model := f.format, f.stream, f.provider, f.model
	f.mu.Unlock()
	now := time.Now()
	var reply *gateway.Reply
	switch {
	case stream && r.stream:
		fr := newFreshener(pathsFor(format, x.Req.OpenAI.Op, true), now.Unix())
		f.mu.Lock()
		first := f.events[0]
		f.open++
		f.mu.Unlock()
		l := &listener{f: f, i: 1, ctx: ctx, fresh: fr, leave: leave, commit: s.commitStream(r, x.Info)}
		reply = &gateway.Reply{Format: format, First: sse.Event{Name: first.Name, Data: fr.apply(nil, first.Data)}, Stream: l}
	case stream && convertible(format, x.Req.OpenAI.Op):
		// A body from the stream: read it to its end (pulling it along).
		f.mu.Lock()
		f.open++
		f.mu.Unlock()
		l := &listener{f: f, ctx: ctx, leave: leave, commit: s.commitStream(r, x.Info)}
		var err error
		for err == nil {
			_, err = l.Next()
		}
		l.Close()
		if err != io.EOF {
			if ctx.Err() != nil {
				return nil, nil
			}
			return s.alone(r)
		}
		f.mu.Lock()
		e := &Entry{Format: format, Op: x.Req.OpenAI.Op, Stream: true, Events: f.events, Usage: f.usage}
		f.mu.Unlock()
		reply, _ = replyFrom(e, false, now)
	case !stream:
		f.mu.Lock()
		e := &Entry{Format: format, Op: x.Req.OpenAI.Op, Body: f.body, Usage: f.usage}
		f.mu.Unlock()
		leave()
		reply, _ = replyFrom(e, r.stream, now)
	default:
		leave()
	}
	if reply == nil {
		return s.alone(r)
	}
	info, h := x.Info, x.Header()
	info.Cache = VerdictHit
	info.Provider, info.UpstreamModel = prov, model
	s.cfg.Stats.Hits.Add(1)
	s.cfg.Stats.Coalesced.Add(1)
	h.Set(HeaderCacheStatus, cacheName+"; hit; detail=coalesced")
	h.Set(HeaderCache, VerdictHit)
	h.Set("Age", "0")
	x.AddTap(&followerTap{s: s, f: f})
	return reply, nil
}

// alone sends r upstream without coalescing or recording.
func (s *Stage) alone(r *request) (*gateway.Reply, *openai.Error) {
	s.cfg.Stats.Misses.Add(1)
	r.x.Info.Cache = VerdictMiss
	r.x.Header().Set(HeaderCacheStatus, cacheName+"; fwd=uri-miss; detail=not-coalesced")
	r.x.Header().Set(HeaderCache, VerdictMiss)
	return nil, nil
}

// followerTap accounts a follower's saved usage once the answer is whole.
type followerTap struct {
	s *Stage
	f *flight
}

func (t *followerTap) Event(*dialect.Event, provider.Format)   {}
func (t *followerTap) Body(b []byte, _ provider.Format) []byte { return b }
func (t *followerTap) End(_ gateway.Outcome, info *gateway.Info) {
	t.f.mu.Lock()
	u := t.f.usage
	t.f.mu.Unlock()
	if !u.Known {
		u = info.Usage
	}
	t.s.saved(info, u)
	info.Usage = openai.Usage{}
}
