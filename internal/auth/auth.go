// Package auth holds the gateway keys: the secrets clients present, the
// policy attached to each, and where keys are stored.
//
// A gateway key is identified by the SHA-256 of its secret ([Hash]); the
// secret itself is never stored, logged or returned by this package. Only the
// caller of [NewSecret] ever sees it, typically to show it once to the admin
// who created the key.
//
// Keys come from two places: static keys declared in the configuration
// (read-only at run time) and runtime keys created through a [Store]:
// [Memory] keeps them in process (optionally persisted to a JSON file) and
// [Redis] shares them between gateway processes.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

var (
	// ErrNotFound is returned when no key has the given name or hash.
	ErrNotFound = errors.New("auth: key not found")
	// ErrExists is returned (wrapped) by Create when the name or the secret
	// hash is already taken.
	ErrExists = errors.New("auth: key already exists")
	// ErrStatic is returned by Delete for keys declared in the configuration.
	ErrStatic = errors.New("auth: key is declared in the configuration")
	// ErrInvalid is returned (wrapped) for malformed keys, names and policies.
	ErrInvalid = errors.New("auth: invalid key")
)

// SecretPrefix starts every secret made by [NewSecret].
const SecretPrefix = "sk-gw-"

// Hash is the SHA-256 of a secret. It is not itself a secret; in JSON and
// text it is lower-case hex.
type Hash [sha256.Size]byte

// HashSecret returns the hash under which the key of secret is stored.
func HashSecret(secret string) Hash { return sha256.Sum256([]byte(secret)) }

// ParseHash parses 64 hex digits.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != hex.EncodedLen(len(h)) {
		return Hash{}, fmt.Errorf("%w: sha256 must be %d hex digits, got %d characters", ErrInvalid, hex.EncodedLen(len(h)), len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return Hash{}, fmt.Errorf("%w: sha256: %v", ErrInvalid, err)
	}
	return h, nil
}

// String returns the hash as hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is unset.
func (h Hash) IsZero() bool { return h == Hash{} }

// Equal compares two hashes in constant time.
func (h Hash) Equal(o Hash) bool { return subtle.ConstantTimeCompare(h[:], o[:]) == 1 }

// MarshalText implements encoding.TextMarshaler (hex).
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (hex).
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// NewSecret returns a fresh secret: SecretPrefix followed by 32 random bytes
// from crypto/rand in unpadded base64url (43 characters).
func NewSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("auth: generating a secret: %w", err)
	}
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// SecretFromRequest returns the secret a client presented, looking in order
// at "Authorization: Bearer <secret>" (scheme case-insensitive, as OpenAI
// SDKs send it), "api-key" (Azure OpenAI SDKs) and "x-api-key" (Anthropic
// SDKs). A header that is present but malformed (another scheme, an empty
// value, embedded spaces or control characters) is skipped. It returns "" when
// no header carries a secret, and when any of these headers appears more
// than once: which of two credentials counts would be a guess (and a proxy
// in front may have checked the other).
func SecretFromRequest(h http.Header) string {
	if len(h["Authorization"]) > 1 || len(h["Api-Key"]) > 1 || len(h["X-Api-Key"]) > 1 {
		return ""
	}
	if v := first(h, "Authorization"); v != "" {
		scheme, token, ok := strings.Cut(strings.TrimSpace(v), " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			if s := cleanSecret(token); s != "" {
				return s
			}
		}
	}
	for _, name := range [...]string{"Api-Key", "X-Api-Key"} {
		if s := cleanSecret(first(h, name)); s != "" {
			return s
		}
	}
	return ""
}

// first is h.Get(name) for a name already in canonical form, without
// canonicalizing it again on every request.
func first(h http.Header, name string) string {
	if v := h[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// cleanSecret trims surrounding blanks and returns "" for values that cannot
// be a secret (empty, inner whitespace or control characters).
func cleanSecret(s string) string {
	s = strings.TrimSpace(s)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return ""
		}
	}
	return s
}
