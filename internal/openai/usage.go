package openai

import "github.com/tidwall/gjson"

// Usage is the token accounting of one answer.
type Usage struct {
	InputTokens  int64
	OutputTokens int64
	CachedTokens int64
	// Known is true once an upstream reported usage.
	Known bool
}

// ParseUsage reads a usage object in either the Chat/Completions/Embeddings
// shape (prompt_tokens, completion_tokens) or the Responses shape
// (input_tokens, output_tokens).
func ParseUsage(u gjson.Result) Usage {
	if !u.IsObject() {
		return Usage{}
	}
	var out Usage
	u.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "prompt_tokens", "input_tokens":
			out.InputTokens = v.Int()
			out.Known = true
		case "completion_tokens", "output_tokens":
			out.OutputTokens = v.Int()
			out.Known = true
		case "prompt_tokens_details", "input_tokens_details":
			out.CachedTokens = v.Get("cached_tokens").Int()
		}
		return true
	})
	return out
}

// UsageOf returns the usage object of a non-stream response body.
func UsageOf(body []byte) Usage { return ParseUsage(gjson.GetBytes(body, "usage")) }
