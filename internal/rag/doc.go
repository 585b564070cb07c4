// Package rag is retrieval-augmented generation at the gateway: documents
// split into token-sized chunks with contextual headers (chunk.go), a BM25
// lexical index (bm25.go), vectors from an embedding model, a collection
// that keeps both in a crash-safe embedded store (embedded.go) or in a
// Chroma server (chroma.go), hybrid retrieval fused by reciprocal rank
// fusion (collection.go), and the pipeline stage that injects what it
// retrieved into the prompt (stage.go, rewrite.go).
//
// Token counts are estimated: one token per 4 bytes of text, rounded up
// (the rule of thumb the gateway's reservations use, see
// openai.EstimateInputTokens). EstimateTokens is the one place that
// estimate is made here, so an exact tokenizer can replace it.
package rag

// bytesPerToken is the estimate's ratio.
const bytesPerToken = 4

// EstimateTokens estimates the tokens of s: len(s)/4 rounded up.
func EstimateTokens(s string) int { return (len(s) + bytesPerToken - 1) / bytesPerToken }
