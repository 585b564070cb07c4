package openai

import (
	"strings"
	"testing"
)

func TestEstimateInputTokens(t *testing.T) {
	text := strings.Repeat("abcd", 100) // 100 tokens
	cases := []struct {
		name     string
		body     string
		min, max int64
	}{
		{"one message", `{"model":"m","messages":[{"role":"user","content":"` + text + `"}]}`, 100, 110},
		{"image is not counted by bytes", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,` + strings.Repeat("A", 100000) + `"}}]}]}`, 765, 800},
		{"embeddings array", `{"model":"m","input":["` + text + `","` + text + `"]}`, 200, 210},
		{"responses string", `{"model":"m","input":"` + text + `"}`, 100, 110},
	}
	for _, c := range cases {
		op := OpChat
		if !strings.Contains(c.body, "messages") {
			op = OpResponses
		}
		r, err := ParseRequest(op, []byte(c.body), 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := EstimateInputTokens(r); got < c.min || got > c.max {
			t.Errorf("%s: %d not in [%d,%d]", c.name, got, c.min, c.max)
		}
	}
}
