package usage

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
)

// Step is the width of a rollup bucket.
type Step string

// The steps rollups keep.
const (
	StepHour Step = "hour"
	StepDay  Step = "day"
)

// Retention of each step's buckets.
const (
	HourRetention = 8 * 24 * time.Hour
	DayRetention  = 400 * 24 * time.Hour
)

// MaxBuckets bounds the buckets one query reads.
const MaxBuckets = 2000

// Start returns the start of the bucket of s containing t (UTC).
func (s Step) Start(t time.Time) time.Time {
	return time.Unix(s.startUnix(t.Unix()), 0).UTC()
}

// startUnix is Start in Unix seconds: UTC hours and days are whole
// multiples of 3,600 and 86,400 seconds of Unix time (which has no leap
// seconds), rounded toward minus infinity.
func (s Step) startUnix(u int64) int64 {
	w := int64(s.Width() / time.Second)
	r := u % w
	if r < 0 {
		r += w
	}
	return u - r
}

// Width is the bucket's duration.
func (s Step) Width() time.Duration {
	if s == StepDay {
		return 24 * time.Hour
	}
	return time.Hour
}

func (s Step) retention() time.Duration {
	if s == StepDay {
		return DayRetention
	}
	return HourRetention
}

func (s Step) code() string {
	if s == StepDay {
		return "d"
	}
	return "h"
}

// Dims are what one request is accounted by. Every value is bounded by
// the configuration (key names, routing table patterns, provider names,
// configured upstream models) or by the gateway (cache verdicts, statuses).
type Dims struct {
	Key           string `json:"key,omitempty"`
	Route         string `json:"model,omitempty"` // the routing table entry
	Provider      string `json:"provider,omitempty"`
	UpstreamModel string `json:"upstream_model,omitempty"`
	Cache         string `json:"cache,omitempty"`
	Status        string `json:"status,omitempty"`
}

// DimNames are the names of Dims' fields in queries (group_by).
var DimNames = [...]string{"key", "model", "provider", "upstream_model", "cache", "status"}

func (d *Dims) fields() [6]*string {
	return [6]*string{&d.Key, &d.Route, &d.Provider, &d.UpstreamModel, &d.Cache, &d.Status}
}

// Project keeps only the dimensions named in keep (DimNames indexes).
func (d Dims) Project(keep [len(DimNames)]bool) Dims {
	f := d.fields()
	for i := range f {
		if !keep[i] {
			*f[i] = ""
		}
	}
	return d
}

const dimSep = "\x1f"

func (d Dims) encode() string {
	return strings.Join([]string{d.Key, d.Route, d.Provider, d.UpstreamModel, d.Cache, d.Status}, dimSep)
}

func decodeDims(s string) (Dims, bool) {
	p := strings.Split(s, dimSep)
	if len(p) != 6 {
		return Dims{}, false
	}
	return Dims{p[0], p[1], p[2], p[3], p[4], p[5]}, true
}

// Counts are the accounted amounts.
type Counts struct {
	Requests     int64 `json:"requests"`
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
	CachedTokens int64 `json:"cached_tokens"`
	CostMicros   int64 `json:"cost_micros"`
}

// Add adds o to c.
func (c *Counts) Add(o Counts) {
	c.Requests += o.Requests
	c.InputTokens += o.InputTokens
	c.OutputTokens += o.OutputTokens
	c.CachedTokens += o.CachedTokens
	c.CostMicros += o.CostMicros
}

func (c *Counts) values() [5]*int64 {
	return [5]*int64{&c.Requests, &c.InputTokens, &c.OutputTokens, &c.CachedTokens, &c.CostMicros}
}

// countFields are the hash field suffixes of Counts, in field order.
var countFields = [...]string{"r", "i", "o", "c", "u"}

// Row is the counts of one bucket and one set of dimensions.
type Row struct {
	Start time.Time
	Dims  Dims
	Counts
}

// Rollups account requests per hour and per day. Methods are safe for
// concurrent use.
type Rollups interface {
	// Add accounts c under d in the hour and the day containing t.
	Add(ctx context.Context, t time.Time, d Dims, c Counts) error
	// Query returns the rows of step's buckets starting in [from, to),
	// ordered by bucket start.
	Query(ctx context.Context, step Step, from, to time.Time) ([]Row, error)
}

// Buckets returns the starts of step's buckets in [from, to); an error
// past MaxBuckets.
func Buckets(step Step, from, to time.Time) ([]time.Time, error) {
	var out []time.Time
	for t := step.Start(from); t.Before(to); t = t.Add(step.Width()) {
		if len(out) == MaxBuckets {
			return nil, fmt.Errorf("usage: more than %d %s buckets: narrow from and to", MaxBuckets, step)
		}
		out = append(out, t)
	}
	return out, nil
}

// MemoryRollups are in-process [Rollups].
type MemoryRollups struct {
	now func() time.Time

	mu        sync.Mutex
	rows      map[rollupKey]*Counts // guarded by mu
	nextSweep int
	// last are the rows the last Add added to (guarded by mu): a gateway
	// serving one app adds to the same two rows request after request,
	// and then hashes no key.
	last lastRows
}

type rollupKey struct {
	step  Step
	start int64
	dims  Dims
}

type lastRows struct {
	hour    int64 // the hour row's start
	dims    Dims
	hourRow *Counts
	dayRow  *Counts
}

var _ Rollups = (*MemoryRollups)(nil)

// NewMemoryRollups returns empty in-process rollups.
func NewMemoryRollups() *MemoryRollups {
	return &MemoryRollups{now: time.Now, rows: make(map[rollupKey]*Counts), nextSweep: minSweepLen}
}

// Add implements [Rollups].
func (m *MemoryRollups) Add(_ context.Context, t time.Time, d Dims, c Counts) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.rows) >= m.nextSweep {
		m.sweep()
	}
	u := t.Unix()
	hour := StepHour.startUnix(u)
	l := &m.last
	if l.hourRow == nil || l.hour != hour || l.dims != d {
		*l = lastRows{hour: hour, dims: d, hourRow: m.row(rollupKey{StepHour, hour, d}), dayRow: m.row(rollupKey{StepDay, StepDay.startUnix(u), d})}
	}
	l.hourRow.Add(c)
	l.dayRow.Add(c)
	return nil
}

// row is k's row, made when missing. Called with mu held.
func (m *MemoryRollups) row(k rollupKey) *Counts {
	r := m.rows[k]
	if r == nil {
		r = new(Counts)
		m.rows[k] = r
	}
	return r
}

// sweep drops the buckets past their retention. Called with mu held.
func (m *MemoryRollups) sweep() {
	now := m.now()
	for k := range m.rows {
		if now.Sub(time.Unix(k.start, 0)) > k.step.retention() {
			delete(m.rows, k)
		}
	}
	m.last = lastRows{} // its rows may be gone
	m.nextSweep = max(minSweepLen, 2*len(m.rows))
}

// Query implements [Rollups].
func (m *MemoryRollups) Query(_ context.Context, step Step, from, to time.Time) ([]Row, error) {
	if _, err := Buckets(step, from, to); err != nil {
		return nil, err
	}
	lo, hi := step.Start(from).Unix(), to.Unix()
	m.mu.Lock()
	var out []Row
	for k, c := range m.rows {
		if k.step == step && k.start >= lo && k.start < hi {
			out = append(out, Row{Start: time.Unix(k.start, 0).UTC(), Dims: k.dims, Counts: *c})
		}
	}
	m.mu.Unlock()
	sortRows(out)
	return out, nil
}

func sortRows(rows []Row) {
	sort.Slice(rows, func(i, j int) bool {
		if !rows[i].Start.Equal(rows[j].Start) {
			return rows[i].Start.Before(rows[j].Start)
		}
		return rows[i].Dims.encode() < rows[j].Dims.encode()
	})
}

// RedisRollups are [Rollups] shared by every gateway using the same Redis
// and prefix. Each bucket is one hash
//
//	<prefix>h:<unix start>   (hours; d: for days)
//	  <dims>\x1f<r|i|o|c|u>  requests, input, output, cached tokens, micro-USD
//
// incremented with HINCRBY (by Add; a [RollupEntry] in a settlement is
// applied by the settlement's script) and expiring (PEXPIREAT) after the
// step's retention. A hash is one key, so Redis Cluster works too.
type RedisRollups struct {
	client redis.UniversalClient
	prefix string
	last   [2]atomic.Pointer[bucketName] // the hour's and the day's bucket key
}

var _ Rollups = (*RedisRollups)(nil)

// NewRedisRollups returns rollups stored in client under keys starting
// with prefix (e.g. "aigw:rollup:"). The client is owned by the caller.
func NewRedisRollups(client redis.UniversalClient, prefix string) *RedisRollups {
	return &RedisRollups{client: client, prefix: prefix}
}

func (r *RedisRollups) key(s Step, start time.Time) string {
	return r.prefix + s.code() + ":" + strconv.FormatInt(start.Unix(), 10)
}

// pipe queues Add's commands on p.
func (r *RedisRollups) pipe(ctx context.Context, p redis.Pipeliner, t time.Time, d Dims, c Counts) []redis.Cmder {
	dims := d.encode()
	vals := c.values()
	cmds := make([]redis.Cmder, 0, 12)
	for _, s := range [...]Step{StepHour, StepDay} {
		start := s.Start(t)
		k := r.key(s, start)
		for i, f := range countFields {
			if *vals[i] != 0 {
				cmds = append(cmds, p.HIncrBy(ctx, k, dims+dimSep+f, *vals[i]))
			}
		}
		cmds = append(cmds, p.PExpireAt(ctx, k, start.Add(s.retention())))
	}
	return cmds
}

// Add implements [Rollups].
func (r *RedisRollups) Add(ctx context.Context, t time.Time, d Dims, c Counts) error {
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		r.pipe(ctx, p, t, d, c)
		return nil
	})
	if err != nil {
		return fmt.Errorf("usage: redis: %w", err)
	}
	return nil
}

// Query implements [Rollups]: one pipeline of HGETALL, one per bucket.
func (r *RedisRollups) Query(ctx context.Context, step Step, from, to time.Time) ([]Row, error) {
	starts, err := Buckets(step, from, to)
	if err != nil {
		return nil, err
	}
	cmds := make([]*redis.MapStringStringCmd, len(starts))
	_, err = r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range starts {
			cmds[i] = p.HGetAll(ctx, r.key(step, s))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("usage: redis: %w", err)
	}
	var out []Row
	for i, cmd := range cmds {
		byDims := map[string]*Counts{}
		for field, v := range cmd.Val() {
			j := strings.LastIndex(field, dimSep)
			if j < 0 {
				continue
			}
			dims, name := field[:j], field[j+len(dimSep):]
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				continue
			}
			c := byDims[dims]
			if c == nil {
				c = new(Counts)
				byDims[dims] = c
			}
			for k, f := range countFields {
				if f == name {
					*c.values()[k] = n
				}
			}
		}
		for enc, c := range byDims {
			d, ok := decodeDims(enc)
			if !ok {
				continue
			}
			out = append(out, Row{Start: starts[i], Dims: d, Counts: *c})
		}
	}
	sortRows(out)
	return out, nil
}

// RollupEntry is one [Rollups.Add] described as data, so that it travels
// with a request's settlement (it is a ratelimit.Write): in the
// settlement's Redis pipeline for [RedisRollups], on its own otherwise.
type RollupEntry struct {
	Rollups Rollups
	At      time.Time
	Dims    Dims
	Counts  Counts
}

// Pipe queues the entry on p when its rollups are RedisRollups.
func (e *RollupEntry) Pipe(ctx context.Context, p redis.Pipeliner) ([]redis.Cmder, bool) {
	rr, ok := e.Rollups.(*RedisRollups)
	if !ok {
		return nil, false
	}
	return rr.pipe(ctx, p, e.At, e.Dims, e.Counts), true
}

// HashAdds are the entry as ratelimit.HashAdds (the hour's bucket and the
// day's) when its rollups are RedisRollups, so that the settlement's own
// script applies them: one HMGET and one HSET per bucket, its expiry set
// when the entry creates its fields, and a batch's entries of one bucket
// added together.
func (e *RollupEntry) HashAdds() ([]ratelimit.HashAdd, bool) {
	rr, ok := e.Rollups.(*RedisRollups)
	if !ok {
		return nil, false
	}
	vals := e.Counts.values()
	n := 0
	for _, v := range vals {
		if *v != 0 {
			n++
		}
	}
	if n == 0 {
		return nil, true
	}
	// One allocation for the field names: "<dims>\x1f<f>" for each field,
	// one after the other in one string.
	d := &e.Dims
	dl := len(d.Key) + len(d.Route) + len(d.Provider) + len(d.UpstreamModel) + len(d.Cache) + len(d.Status) + 5*len(dimSep)
	var b strings.Builder
	b.Grow(n * (dl + len(dimSep) + 1))
	type hashes struct {
		adds   [2]ratelimit.HashAdd
		names  [len(countFields)]string
		values [len(countFields)]int64
	}
	h := new(hashes)
	j := 0
	for i, f := range countFields {
		if *vals[i] == 0 {
			continue
		}
		for k, p := range d.fields() {
			if k > 0 {
				b.WriteString(dimSep)
			}
			b.WriteString(*p)
		}
		b.WriteString(dimSep)
		b.WriteString(f)
		h.values[j] = *vals[i]
		j++
	}
	all := b.String()
	w := dl + len(dimSep) + 1
	for k := range n {
		h.names[k] = all[k*w : (k+1)*w]
	}
	for i, s := range [...]Step{StepHour, StepDay} {
		start := s.Start(e.At)
		h.adds[i] = ratelimit.HashAdd{Key: rr.bucketKey(s, start), Fields: h.names[:n:n], Values: h.values[:n:n],
			Expires: start.Add(s.retention())}
	}
	return h.adds[:], true
}

// bucketKey is key, remembered for the bucket last asked of each step.
func (r *RedisRollups) bucketKey(s Step, start time.Time) string {
	i := 0
	if s == StepDay {
		i = 1
	}
	unix := start.Unix()
	if last := r.last[i].Load(); last != nil && last.start == unix {
		return last.key
	}
	k := r.key(s, start)
	r.last[i].Store(&bucketName{unix, k})
	return k
}

type bucketName struct {
	start int64
	key   string
}

// Do adds the entry to its rollups.
func (e *RollupEntry) Do(ctx context.Context) error {
	return e.Rollups.Add(ctx, e.At, e.Dims, e.Counts)
}
