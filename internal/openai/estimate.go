package openai

import "github.com/tidwall/gjson"

// Token estimation for reservations (TPM, budgets). No BPE tokenizer with
// embedded ranks is available offline as a Go module here, so the gateway
// uses a fast, documented estimate and settles to the upstream's real usage
// afterwards:
//
//   - text: one token per 4 bytes (rounded up), OpenAI's rule of thumb for
//     English; plus 4 tokens of framing per message and 3 per request;
//   - images: 765 tokens each (a high-detail 512px-tile image);
//   - tools, response_format and other fields: one token per 4 bytes of JSON.
//
// Over-estimates are refunded when the answer's usage arrives.
const (
	bytesPerToken  = 4
	tokensPerMsg   = 4
	tokensPerReq   = 3
	tokensPerImage = 765
)

// EstimateInputTokens estimates the prompt tokens of a request.
func EstimateInputTokens(r *Request) int64 {
	root := ParseInPlace(r.Body)
	n := int64(tokensPerReq)
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "messages", "input", "prompt":
			n += estimateContent(v)
		case "tools", "functions", "response_format", "system", "instructions":
			n += textTokens(len(v.Raw))
		}
		return true
	})
	return n
}

func estimateContent(v gjson.Result) int64 {
	switch {
	case v.Type == gjson.String:
		return textTokens(len(v.Str))
	case v.IsArray():
		var n int64
		v.ForEach(func(_, item gjson.Result) bool {
			n += estimateItem(item)
			return true
		})
		return n
	}
	return textTokens(len(v.Raw))
}

func estimateItem(item gjson.Result) int64 {
	switch {
	case item.Type == gjson.String:
		return textTokens(len(item.Str))
	case item.Type == gjson.Number:
		return 1 // a token id
	case item.IsArray():
		return estimateContent(item)
	case !item.IsObject():
		return 0
	}
	var n int64 = tokensPerMsg
	item.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "content":
			if v.IsArray() {
				v.ForEach(func(_, part gjson.Result) bool {
					n += estimatePart(part)
					return true
				})
			} else {
				n += textTokens(len(v.Str))
			}
		case "text", "arguments", "output":
			n += textTokens(len(v.Str))
		case "tool_calls", "function_call":
			n += textTokens(len(v.Raw))
		case "type":
			if v.Str == "image_url" || v.Str == "input_image" || v.Str == "image" {
				n += tokensPerImage
			}
		}
		return true
	})
	return n
}

func estimatePart(part gjson.Result) int64 {
	switch part.Get("type").Str {
	case "image_url", "input_image", "image":
		return tokensPerImage
	case "text", "input_text", "output_text":
		return textTokens(len(part.Get("text").Str))
	}
	return textTokens(len(part.Raw))
}

func textTokens(bytes int) int64 { return int64((bytes + bytesPerToken - 1) / bytesPerToken) }
