package fakellm

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DefaultDimensions is the embedding size when the request has no
// "dimensions".
const DefaultDimensions = 64

// maxDimensions bounds "dimensions" to keep answers reasonable.
const maxDimensions = 16384

// embeddings answers POST /v1/embeddings with a list of embedding objects.
// "input" may be a string, an array of strings, a token array or an array of
// token arrays (tokens are treated as words); "encoding_format" is "float"
// (default) or "base64" (little-endian float32). Stream, Echo, ToolCall and
// Chunks do not apply.
//
// https://platform.openai.com/docs/api-reference/embeddings/create
// https://platform.openai.com/docs/api-reference/embeddings/object
func (x *exchange) embeddings() {
	texts, err := embeddingInputs(x.req.Input)
	if err != nil {
		x.writeError(http.StatusBadRequest, err.Error(), "input", "")
		return
	}
	dims := x.req.Dimensions
	if dims <= 0 {
		dims = DefaultDimensions
	}
	if dims > maxDimensions {
		x.writeError(http.StatusBadRequest, "dimensions must be at most "+strconv.Itoa(maxDimensions), "dimensions", "")
		return
	}
	b64 := false
	switch x.req.EncodingFormat {
	case "", "float":
	case "base64":
		b64 = true
	default:
		x.writeError(http.StatusBadRequest, "encoding_format must be 'float' or 'base64'", "encoding_format", "")
		return
	}

	per := dims * 12 // a float prints in at most ~12 bytes
	if b64 {
		per = base64.StdEncoding.EncodedLen(4 * dims)
	}
	b := make([]byte, 0, 128+len(texts)*(64+per))
	b = append(b, `{"object":"list","data":[`...)
	vec := make([]float32, dims)
	var raw []byte
	for i, t := range texts {
		embedInto(vec, t)
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"object":"embedding","index":`...)
		b = appendInt(b, i)
		b = append(b, `,"embedding":`...)
		if b64 {
			raw = raw[:0]
			for _, f := range vec {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(f))
			}
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, raw)
			b = append(b, '"')
		} else {
			b = append(b, '[')
			for j, f := range vec {
				if j > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	prompt := x.s.scalePrompt(x.req.promptTokens())
	b = append(b, `],"model":`...)
	b = appendJSONString(b, x.model)
	b = append(b, `,"usage":{"prompt_tokens":`...)
	b = appendInt(b, prompt)
	b = appendKeyInt(b, "total_tokens", prompt)
	b = append(b, "}}"...)
	x.writeJSON(http.StatusOK, b)
}

// embeddingInputs returns the texts to embed; token arrays become their
// integers joined by spaces.
func embeddingInputs(raw json.RawMessage) ([]string, error) {
	switch firstByte(raw) {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return []string{s}, nil
	case '[':
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return nil, err
		}
		if len(elems) == 0 {
			return nil, errors.New("'input' must not be empty")
		}
		if c := firstByte(elems[0]); c == '-' || (c >= '0' && c <= '9') {
			t, err := tokenText(raw)
			return []string{t}, err
		}
		texts := make([]string, len(elems))
		for i, e := range elems {
			var err error
			switch firstByte(e) {
			case '"':
				err = json.Unmarshal(e, &texts[i])
			case '[':
				texts[i], err = tokenText(e)
			default:
				err = errors.New("'input' items must be strings or token arrays")
			}
			if err != nil {
				return nil, err
			}
		}
		return texts, nil
	}
	return nil, errors.New("'input' is a required property (a string, an array of strings or of token arrays)")
}

// tokenText turns a token array into its integers joined by spaces.
func tokenText(raw json.RawMessage) (string, error) {
	var toks []json.Number
	if err := json.Unmarshal(raw, &toks); err != nil {
		return "", err
	}
	var sb strings.Builder
	for i, t := range toks {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(t.String())
	}
	return sb.String(), nil
}

// Embed returns the deterministic embedding of text with dims dimensions
// ([DefaultDimensions] if dims <= 0): a hashed bag of words. Each lowercase
// word (maximal run of letters and digits) is hashed with 64-bit FNV-1a; the
// hash picks a bucket (hash mod dims) and a sign (top bit), and the bucket
// accumulates ±1 per occurrence. The vector is L2-normalised, so texts
// sharing words have a higher cosine similarity. A text without words yields
// the zero vector.
func Embed(text string, dims int) []float32 {
	if dims <= 0 {
		dims = DefaultDimensions
	}
	v := make([]float32, dims)
	embedInto(v, text)
	return v
}

// FNV-1a 64-bit parameters.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// embedInto computes Embed(text, len(v)) into v without allocating.
func embedInto(v []float32, text string) {
	clear(v)
	dims := uint64(len(v))
	h, inWord := uint64(fnvOffset64), false
	flush := func() {
		if inWord {
			if h>>63 == 1 {
				v[h%dims]--
			} else {
				v[h%dims]++
			}
		}
		h, inWord = fnvOffset64, false
	}
	var enc [utf8.UTFMax]byte
	for _, r := range text {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			flush()
			continue
		}
		inWord = true
		r = unicode.ToLower(r)
		if r < utf8.RuneSelf {
			h = (h ^ uint64(r)) * fnvPrime64
			continue
		}
		for _, c := range enc[:utf8.EncodeRune(enc[:], r)] {
			h = (h ^ uint64(c)) * fnvPrime64
		}
	}
	flush()
	var sum float64
	for _, f := range v {
		sum += float64(f) * float64(f)
	}
	if sum == 0 {
		return
	}
	inv := 1 / math.Sqrt(sum)
	for i, f := range v {
		v[i] = float32(float64(f) * inv)
	}
}
