package provider

// Format is a wire format: the shape of a request, an answer and its
// stream events. The gateway's pipeline works on OpenAI's; a client dialect
// or a provider may speak another.
type Format uint8

// The wire formats.
const (
	FormatOpenAI    Format = iota // OpenAI's Chat Completions, Completions, Embeddings, Responses
	FormatAnthropic               // Anthropic's Messages API
)

func (f Format) String() string {
	if f == FormatAnthropic {
		return "anthropic"
	}
	return "openai"
}
