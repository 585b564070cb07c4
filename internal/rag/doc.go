// Package rag is retrieval-augmented generation at the gateway: documents
// split into token-sized chunks with contextual headers (chunk.go), a BM25
// lexical index (bm25.go), vectors from an embedding model, a collection
// that keeps both in a crash-safe embedded store (embedded.go) or in a
// Chroma server (chroma.go), hybrid retrieval fused by reciprocal rank
// fusion (collection.go), and the pipeline stage that injects what it
// retrieved into the prompt (stage.go, rewrite.go).
//
// Token counts are estimated: one token per 4 bytes of text, rounded up.
// A collection serves every model of the routing table, so its chunks
// cannot be sized by one model's tokenizer (internal/tokens); the injected
// context is then counted in the key's TPM and spend from the upstream's
// reported usage. EstimateTokens is the one place that estimate is made
// here.
package rag

// bytesPerToken is the estimate's ratio.
const bytesPerToken = 4

// EstimateTokens estimates the tokens of s: len(s)/4 rounded up.
func EstimateTokens(s string) int { return (len(s) + bytesPerToken - 1) / bytesPerToken }
