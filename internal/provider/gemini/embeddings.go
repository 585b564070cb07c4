package gemini

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// embedInfo is what the embeddings answer needs from the request.
type embedInfo struct {
	n      int   // inputs
	tokens int64 // estimated prompt tokens
	base64 bool  // encoding_format "base64"
}

// buildEmbed translates an OpenAI embeddings request into a
// batchEmbedContents request (https://ai.google.dev/api/embeddings#method:-models.batchembedcontents):
// one EmbedContentRequest {model, content{parts[{text}]},
// outputDimensionality} per input string. "input" must be a string or an
// array of strings: Gemini embeds text, so token arrays are refused;
// "dimensions" becomes outputDimensionality; encoding_format "base64" is
// produced by the gateway from the returned floats.
func buildEmbed(req *openai.Request, model string) ([]byte, embedInfo, *provider.Error) {
	var info embedInfo
	root := parse(req.Body)
	input := root.Get("input")
	dims := root.Get("dimensions")
	if !isNull(dims) && (dims.Type != gjson.Number || dims.Int() < 1 || float64(dims.Int()) != dims.Num) {
		return nil, info, invalidValue("dimensions", "expected a positive integer.")
	}
	switch f := root.Get("encoding_format"); {
	case isNull(f) || f.Str == "float":
	case f.Str == "base64":
		info.base64 = true
	default:
		return nil, info, invalidValue("encoding_format", "expected 'float' or 'base64'.")
	}
	res := resourceName(model)
	out := make([]byte, 0, len(input.Raw)+128)
	out = append(out, `{"requests":[`...)
	var err *provider.Error
	add := func(t gjson.Result) {
		if info.n > 0 {
			out = append(out, ',')
		}
		info.n++
		info.tokens += estimateTokens(t.Str)
		out = append(out, `{"model":`...)
		out = openai.AppendString(out, res)
		out = append(out, `,"content":{"parts":[{"text":`...)
		out = appendStringValue(out, t)
		out = append(out, `}]}`...)
		if !isNull(dims) {
			out = append(out, `,"outputDimensionality":`...)
			out = appendInt(out, dims.Int())
		}
		out = append(out, '}')
	}
	switch {
	case input.Type == gjson.String:
		add(input)
	case input.IsArray():
		input.ForEach(func(_, v gjson.Result) bool {
			if v.Type != gjson.String {
				err = badRequest("input", "unsupported_value",
					"Token arrays are not supported by this model's provider (Google Gemini); send 'input' as a string or an array of strings.")
				return false
			}
			add(v)
			return true
		})
	default:
		err = invalidType("input", "a string or an array of strings")
	}
	if err != nil {
		return nil, info, err
	}
	if info.n == 0 {
		return nil, info, invalidValue("input", "must not be empty.")
	}
	return append(out, "]}"...), info, nil
}

// estimateTokens estimates a text's token count as a quarter of its
// characters (Gemini's documented rule of thumb: a token is about four
// characters). batchEmbedContents reports no usage, so embeddings usage is
// this estimate; https://ai.google.dev/gemini-api/docs/tokens
func estimateTokens(s string) int64 {
	n := int64(utf8.RuneCountInString(s))
	return (n + 3) / 4
}

// translateEmbeddings turns a BatchEmbedContentsResponse {"embeddings":
// [{"values":[...]}]} into OpenAI's embedding list. Usage is the estimate
// of buildEmbed, unless the answer carries usageMetadata.promptTokenCount.
func translateEmbeddings(body []byte, model string, info embedInfo) ([]byte, *provider.Error) {
	if !jsonraw.Valid(body) {
		return nil, &provider.Error{Kind: provider.KindProtocol, Message: "answer is not JSON"}
	}
	root := parse(body)
	embs := root.Get("embeddings")
	if !embs.IsArray() {
		return nil, &provider.Error{Kind: provider.KindProtocol, Message: "answer has no embeddings"}
	}
	out := make([]byte, 0, len(body)+128)
	out = append(out, `{"object":"list","data":[`...)
	var raw []byte
	i := 0
	bad := false
	embs.ForEach(func(_, e gjson.Result) bool {
		vals := e.Get("values")
		if !vals.IsArray() {
			bad = true
			return false
		}
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"object":"embedding","index":`...)
		out = strconv.AppendInt(out, int64(i), 10)
		out = append(out, `,"embedding":`...)
		if info.base64 {
			raw = raw[:0]
			vals.ForEach(func(_, v gjson.Result) bool {
				if v.Type != gjson.Number {
					bad = true
					return false
				}
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(float32(v.Num)))
				return true
			})
			out = append(out, '"')
			out = base64.StdEncoding.AppendEncode(out, raw)
			out = append(out, '"')
		} else {
			out = appendCompact(out, vals.Raw)
		}
		out = append(out, '}')
		i++
		return !bad
	})
	if bad || i != info.n {
		return nil, &provider.Error{Kind: provider.KindProtocol, Message: "answer does not hold one embedding per input"}
	}
	tokens := info.tokens
	if pt := root.Get("usageMetadata.promptTokenCount"); pt.Type == gjson.Number {
		tokens = pt.Int()
	}
	out = append(out, `],"model":`...)
	out = openai.AppendString(out, model)
	out = append(out, `,"usage":{"prompt_tokens":`...)
	out = appendInt(out, tokens)
	out = append(out, `,"total_tokens":`...)
	out = appendInt(out, tokens)
	return append(out, "}}"...), nil
}
