package anthropic

import "strconv"

// Helpers over raw JSON values as returned by the jsonraw package.

// isString reports whether raw is a JSON string literal.
func isString(raw string) bool { return len(raw) >= 2 && raw[0] == '"' }

// isEmptyString reports whether raw is absent, null or "".
func isEmptyString(raw string) bool { return !isString(raw) || raw == `""` }

// rawInt parses a raw JSON integer; absent, null or malformed yield 0.
func rawInt(raw string) int64 {
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		if f, ferr := strconv.ParseFloat(raw, 64); ferr == nil && f >= 0 && f < 1<<53 {
			return int64(f)
		}
		return 0
	}
	return n
}

// stringOr returns raw when it is a JSON string literal, else def.
func stringOr(raw, def string) string {
	if isString(raw) {
		return raw
	}
	return def
}
