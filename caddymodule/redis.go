package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisMode is the kind of deployment a `redis` URL names.
type redisMode string

const (
	redisSingle   redisMode = "single"
	redisCluster  redisMode = "cluster"
	redisSentinel redisMode = "sentinel"
)

// redisTarget is a parsed `redis` URL. Its String form is safe to log.
type redisTarget struct {
	mode     redisMode
	redacted string // the URL with every password replaced by "xxxxx"

	single   *redis.Options
	cluster  *redis.ClusterOptions
	failover *redis.FailoverOptions
}

// String returns the URL without its passwords.
func (t *redisTarget) String() string { return t.redacted }

// parseRedisURL parses a `redis` URL with go-redis's own parsers:
//
//	redis://[user:password@]host:port[/db][?option=value...]             one server
//	rediss://...                                                         the same over TLS
//	redis+cluster://[user:password@]host:port[?addr=host:port...]        Redis Cluster seed nodes
//	rediss+cluster://...                                                 the same over TLS
//	redis+sentinel://[user:password@]host:port[/db]?master_name=<name>[&addr=host:port...][&username=...&password=...]
//	rediss+sentinel://...                                                the same over TLS
//
// For Sentinel the user and password in front of the host authenticate to
// the sentinels, and the username and password options to the master (as
// go-redis's ParseFailoverURL reads them). Errors never contain a password.
func parseRedisURL(raw string) (*redisTarget, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse errors quote the URL or parts of it, which may be a
		// password.
		return nil, errors.New("invalid url (not shown: it may contain a password)")
	}
	scheme, suffix, _ := strings.Cut(u.Scheme, "+")
	if scheme != "redis" && scheme != "rediss" {
		return nil, fmt.Errorf("url scheme must be redis, rediss, redis+cluster, rediss+cluster, redis+sentinel or rediss+sentinel, not %q", u.Scheme)
	}
	plain := *u
	plain.Scheme = scheme
	t := &redisTarget{redacted: redactURL(u)}
	secrets := urlSecrets(u)
	switch suffix {
	case "":
		t.mode = redisSingle
		t.single, err = redis.ParseURL(plain.String())
	case "cluster":
		t.mode = redisCluster
		t.cluster, err = redis.ParseClusterURL(plain.String())
	case "sentinel":
		t.mode = redisSentinel
		t.failover, err = redis.ParseFailoverURL(plain.String())
		if err == nil && t.failover.MasterName == "" {
			err = errors.New("a sentinel url needs the master_name option")
		}
	default:
		return nil, fmt.Errorf("url scheme must be redis, rediss, redis+cluster, rediss+cluster, redis+sentinel or rediss+sentinel, not %q", u.Scheme)
	}
	if err != nil {
		return nil, errors.New(scrub(err.Error(), secrets))
	}
	return t, nil
}

// client returns a new client whose every call honours its context deadline
// and gives up after timeout instead of retrying: the limiter's failover
// decides what happens when Redis is slow or down.
func (t *redisTarget) client(timeout time.Duration) redis.UniversalClient {
	ioTimeout := max(timeout, 100*time.Millisecond)
	switch t.mode {
	case redisCluster:
		o := *t.cluster
		o.DialTimeout = max(o.DialTimeout, 200*time.Millisecond)
		o.MaxRetries = -1
		o.ContextTimeoutEnabled = true
		o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = ioTimeout, ioTimeout, ioTimeout
		return redis.NewClusterClient(&o)
	case redisSentinel:
		o := *t.failover
		o.DialTimeout = max(o.DialTimeout, 200*time.Millisecond)
		o.MaxRetries = -1
		o.ContextTimeoutEnabled = true
		o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = ioTimeout, ioTimeout, ioTimeout
		return redis.NewFailoverClient(&o)
	default:
		o := *t.single
		o.DialTimeout = max(o.DialTimeout, 200*time.Millisecond)
		o.MaxRetries = -1
		// Without it go-redis ignores the per-decision deadline and waits
		// for its socket timeouts.
		o.ContextTimeoutEnabled = true
		o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = ioTimeout, ioTimeout, ioTimeout
		return redis.NewClient(&o)
	}
}

// redisPoolKey names the usage pool entry of the client for url and
// timeout. It holds a hash, never the URL: the key may show up in logs.
func redisPoolKey(rawURL string, timeout time.Duration) string {
	sum := sha256.Sum256([]byte(rawURL + "\x00" + timeout.String()))
	return "ai_gateway.redis." + hex.EncodeToString(sum[:16])
}

// isSecretOption reports whether a URL query option holds a password.
func isSecretOption(name string) bool {
	return strings.Contains(strings.ToLower(name), "password")
}

// redactURL returns u with the password in front of the host and every
// password option replaced by "xxxxx".
func redactURL(u *url.URL) string {
	r := *u
	if p, ok := u.User.Password(); ok && p != "" {
		r.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	changed := false
	for name := range q {
		if isSecretOption(name) {
			for i := range q[name] {
				q[name][i] = "xxxxx"
			}
			changed = true
		}
	}
	if changed {
		r.RawQuery = q.Encode()
	}
	return r.String()
}

// urlSecrets returns the passwords in u (in front of the host and in
// options), in raw and decoded form.
func urlSecrets(u *url.URL) []string {
	var out []string
	add := func(s string) {
		if s != "" {
			out = append(out, s, url.QueryEscape(s), url.PathEscape(s))
		}
	}
	if p, ok := u.User.Password(); ok {
		add(p)
	}
	for name, vals := range u.Query() {
		if isSecretOption(name) {
			for _, v := range vals {
				add(v)
			}
		}
	}
	return out
}

// scrub replaces every secret in msg by "xxxxx".
func scrub(msg string, secrets []string) string {
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return msg
}
