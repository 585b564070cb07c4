// Package telemetry traces the gateway's requests with OpenTelemetry,
// following the GenAI semantic conventions (semconv v1.41.0, the last
// release of go.opentelemetry.io/otel/semconv that carries them), and holds
// the one table of metric and attribute names the gateway exports.
//
// A request's trace is a tree:
//
//	ai_gateway <operation>           INTERNAL under Caddy's server span; SERVER under the client's traceparent or as a root
//	├── admission                    the key check and limits: from the key's lookup (when a key was sent and
//	│                                found) to the key limits, model limits and the budget
//	├── cache | rag | guardrails     each configured Stage, by its Name
//	├── <operation> <request model>  CLIENT, one per upstream attempt (retries and fallbacks are siblings)
//	└── <operation> <request model>  the attempt that answered: open until the reply ends
//
// The conventions are still moving: every name the gateway emits is in
// this file.
package telemetry

import (
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
)

// Span attributes (GenAI semantic conventions and the gateway's own).
const (
	AttrOperationName      = semconv.GenAIOperationNameKey
	AttrProviderName       = semconv.GenAIProviderNameKey
	AttrRequestModel       = semconv.GenAIRequestModelKey
	AttrResponseModel      = semconv.GenAIResponseModelKey
	AttrRequestMaxTokens   = semconv.GenAIRequestMaxTokensKey
	AttrRequestTemperature = semconv.GenAIRequestTemperatureKey
	AttrRequestTopP        = semconv.GenAIRequestTopPKey
	AttrRequestStream      = semconv.GenAIRequestStreamKey
	AttrResponseID         = semconv.GenAIResponseIDKey
	AttrFinishReasons      = semconv.GenAIResponseFinishReasonsKey
	AttrInputTokens        = semconv.GenAIUsageInputTokensKey
	AttrOutputTokens       = semconv.GenAIUsageOutputTokensKey
	AttrCacheReadTokens    = semconv.GenAIUsageCacheReadInputTokensKey
	AttrInputMessages      = semconv.GenAIInputMessagesKey
	AttrOutputMessages     = semconv.GenAIOutputMessagesKey
	AttrTokenType          = semconv.GenAITokenTypeKey
	AttrServerAddress      = semconv.ServerAddressKey
	AttrServerPort         = semconv.ServerPortKey
	AttrErrorType          = semconv.ErrorTypeKey

	// The gateway's own, under ai_gateway.*.
	AttrKey       = attribute.Key("ai_gateway.key")       // the key's name, never its secret
	AttrRoute     = attribute.Key("ai_gateway.route")     // the routing table entry
	AttrProvider  = attribute.Key("ai_gateway.provider")  // the configured provider's name
	AttrAttempt   = attribute.Key("ai_gateway.attempt")   // 1 for the first attempt
	AttrAttempts  = attribute.Key("ai_gateway.attempts")  // attempts made
	AttrOutcome   = attribute.Key("ai_gateway.outcome")   // gateway.Outcome
	AttrStatus    = attribute.Key("ai_gateway.status")    // the status the client saw
	AttrCache     = attribute.Key("ai_gateway.cache")     // Info.Cache
	AttrRAG       = attribute.Key("ai_gateway.rag")       // Info.RAG
	AttrGuardrail = attribute.Key("ai_gateway.guardrail") // Info.Guardrails
	AttrCostUSD   = attribute.Key("ai_gateway.cost_usd")
)

// Token types of gen_ai.token.type.
const (
	TokenInput  = "input"
	TokenOutput = "output"
)

// Prometheus names of the semantic-convention instruments: the OTel name
// with dots as underscores and the unit as a suffix ("s" → _seconds,
// "{token}" dropped), as OpenTelemetry's Prometheus exporter names them.
const (
	MetricTokenUsage        = "gen_ai_client_token_usage"
	MetricOperationDuration = "gen_ai_client_operation_duration_seconds"
	MetricTimeToFirstToken  = "gen_ai_server_time_to_first_token_seconds"
	MetricTimePerOutputTok  = "gen_ai_server_time_per_output_token_seconds"

	// Their labels: the attributes with dots as underscores.
	LabelOperation     = "gen_ai_operation_name"
	LabelProvider      = "gen_ai_provider_name"
	LabelRequestModel  = "gen_ai_request_model"
	LabelResponseModel = "gen_ai_response_model"
	LabelTokenType     = "gen_ai_token_type"
)

// Bucket boundaries the GenAI metrics conventions specify.
var (
	BucketsTokenUsage = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}
	BucketsDuration   = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
	BucketsTTFT       = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0}
	BucketsTPOT       = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5}
)

// The gen_ai.operation.name values the gateway serves.
var (
	opChat           = semconv.GenAIOperationNameChat.Value.AsString()
	opTextCompletion = semconv.GenAIOperationNameTextCompletion.Value.AsString()
	opEmbeddings     = semconv.GenAIOperationNameEmbeddings.Value.AsString()
)

// OperationName is gen_ai.operation.name of an operation.
func OperationName(op openai.Op) string {
	switch op {
	case openai.OpCompletions:
		return opTextCompletion
	case openai.OpEmbeddings:
		return opEmbeddings
	}
	return opChat // chat completions, responses, messages
}

// ProviderName is gen_ai.provider.name of a provider type (registry
// type): the convention's well-known value when it has one, else the type.
func ProviderName(typ string) string {
	switch typ {
	case "azure":
		return semconv.GenAIProviderNameAzureAIOpenAI.Value.AsString()
	case "gemini":
		return semconv.GenAIProviderNameGCPGemini.Value.AsString()
	case "mistral":
		return semconv.GenAIProviderNameMistralAI.Value.AsString()
	}
	return typ // openai, anthropic, cohere, groq, deepseek, and those the conventions do not list
}
