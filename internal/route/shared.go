package route

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// SharedCooldowns shares the breaker's cooldowns between gateways through
// one Redis hash: target key → end of the cooldown (Unix ms). A cooldown
// that starts here is written by a background goroutine (never on the
// request's path); every Poll interval one HGETALL reads the others'
// cooldowns into the local breaker (Health.Cool), so a target cooled down
// on one gateway is out of rotation on all within Poll plus a round trip,
// at no Redis cost per request. A breaker that a success closes here
// deletes the entry, and the others end the cooldown they took from it
// (Health.Uncool): a target that answers again is back everywhere. Entries
// that ended are deleted by the pollers.
type SharedCooldowns struct {
	Client redis.UniversalClient
	// Key is the Redis hash, e.g. "aigw:cooldowns".
	Key string
	// Poll is how often the hash is read. Default: 250ms.
	Poll   time.Duration
	Logger *zap.Logger

	out chan cooldown
	// applied is what the last polls applied to the local breaker, by
	// target (the Run goroutine's own).
	applied map[string]time.Time
}

type cooldown struct {
	key   string
	until time.Time
}

// Run shares h's cooldowns until ctx ends.
func (s *SharedCooldowns) Run(ctx context.Context, h *Health) {
	if s.Poll <= 0 {
		s.Poll = 250 * time.Millisecond
	}
	if s.Logger == nil {
		s.Logger = zap.NewNop()
	}
	s.out = make(chan cooldown, 64)
	s.applied = make(map[string]time.Time)
	unset := h.SetOnCool(func(key string, until time.Time) {
		select {
		case s.out <- cooldown{key, until}:
		default: // a burst beyond the buffer: the next ones will tell
		}
	})
	defer unset()
	t := time.NewTicker(s.Poll)
	defer t.Stop()
	failing := false
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case c := <-s.out:
			err = s.publish(ctx, c)
		case <-t.C:
			err = s.poll(ctx, h)
		}
		if err != nil && ctx.Err() == nil && !failing {
			s.Logger.Warn("sharing cooldowns through redis failed", zap.Error(err))
		}
		failing = err != nil
	}
}

func (s *SharedCooldowns) publish(ctx context.Context, c cooldown) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if c.until.IsZero() {
		return s.Client.HDel(ctx, s.Key, c.key).Err()
	}
	// A later cooldown already shared wins: HSET only when it is earlier.
	const script = `local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 0`
	return s.Client.Eval(ctx, script, []string{s.Key}, c.key, strconv.FormatInt(c.until.UnixMilli(), 10)).Err()
}

func (s *SharedCooldowns) poll(ctx context.Context, h *Health) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	m, err := s.Client.HGetAll(ctx, s.Key).Result()
	if err != nil {
		return err
	}
	now := time.Now()
	var ended []any // field, value pairs
	for k, v := range m {
		ms, err := strconv.ParseInt(v, 10, 64)
		until := time.UnixMilli(ms)
		if err != nil || !until.After(now) {
			ended = append(ended, k, v)
			continue
		}
		h.Cool(k, until)
		s.applied[k] = until
	}
	for k, until := range s.applied {
		_, present := m[k]
		switch {
		case !until.After(now):
			delete(s.applied, k)
		case !present: // a success closed the breaker where it came from
			h.Uncool(k, until)
			delete(s.applied, k)
		}
	}
	if len(ended) == 0 {
		return nil
	}
	// Delete an ended entry only if no gateway wrote a new one since.
	const script = `for i = 1, #ARGV, 2 do
if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i+1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 0`
	return s.Client.Eval(ctx, script, []string{s.Key}, ended...).Err()
}
