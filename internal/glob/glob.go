// Package glob matches model names against the gateway's glob patterns:
// '*' matches any run of bytes (also '/') and '?' exactly one byte. The
// routing table, key policies and the pricing table share these semantics.
package glob

import "strings"

// Is reports whether pattern holds a wildcard; one that does not matches
// only the identical name.
func Is(pattern string) bool { return strings.ContainsAny(pattern, "*?") }

// Specificity is the number of non-wildcard bytes of pattern: among globs
// that match a name, the one with the highest specificity is the most
// specific.
func Specificity(pattern string) int {
	return len(pattern) - strings.Count(pattern, "*") - strings.Count(pattern, "?")
}

// Match reports whether name matches pattern.
func Match(pattern, name string) bool {
	px, nx := 0, 0
	nextPx, nextNx := 0, 0
	for px < len(pattern) || nx < len(name) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				nextPx, nextNx = px, nx+1
				px++
				continue
			case '?':
				if nx < len(name) {
					px++
					nx++
					continue
				}
			default:
				if nx < len(name) && name[nx] == c {
					px++
					nx++
					continue
				}
			}
		}
		if 0 < nextNx && nextNx <= len(name) {
			px, nx = nextPx, nextNx
			continue
		}
		return false
	}
	return true
}
