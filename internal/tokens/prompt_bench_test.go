package tokens

import "testing"

// benchChat is make bench's chat request (775 bytes): a system prompt and a
// short conversation.
const benchChat = `{"model":"bench","messages":[` +
	`{"role":"system","content":"You are a helpful assistant for a software company. Answer concisely, cite the documentation when you can, and ask a clarifying question when the request is ambiguous. Never invent configuration options."},` +
	`{"role":"user","content":"How do I put a reverse proxy in front of two backends with health checks and sticky sessions?"},` +
	`{"role":"assistant","content":"Use a reverse_proxy with two upstreams, set lb_policy cookie for sticky sessions, and enable active health checks with health_uri and health_interval."},` +
	`{"role":"user","content":"Thanks. And how do I make it retry a failed request on the other backend, but only for idempotent methods, with a short timeout?"}` +
	`],"temperature":0.2,"user":"bench-user-0001"}`

// BenchmarkPromptEstimate is what the admission pays per request to
// reserve the prompt of a model counted by the estimate.
func BenchmarkPromptEstimate(b *testing.B) {
	body := []byte(benchChat)
	c := For("fake-model")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		c.Prompt(body)
	}
}
