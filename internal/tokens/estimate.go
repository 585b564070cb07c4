package tokens

import (
	"math"
	"unicode"
	"unicode/utf8"
)

// The estimate, for model families whose tokenizers are not available
// offline. It imitates the pieces a BPE pre-tokenizer splits text into
// and what each piece typically costs in o200k_base:
//
//   - a run of ASCII letters (with the space or punctuation mark before
//     it) is one token, plus one per lettersPerToken letters beyond the
//     first;
//   - digits go by groups of three (o200k splits numbers so);
//   - a run of ASCII punctuation is one token per punctPerToken marks;
//   - a run of whitespace not absorbed by the next word is one token;
//   - letters of other alphabets (accented Latin, Cyrillic, Greek…) count
//     as alphabeticWeight letters each; CJK, kana and hangul are cjkTokens
//     each; anything else (emoji, symbols) symbolTokens.
//
// The constants are calibrated against o200k_base on the corpus in
// testdata/corpus (English docs, Go code, a Caddyfile, a chat request,
// German, French, Spanish, Russian and Chinese prose):
// TestEstimateError prints the error per file and in total.
//
// Each family then scales the estimate by its tokenizer's density
// relative to o200k_base, from the vendors' documentation and published
// comparisons, erring high (an over-estimate is refunded when the
// upstream's usage settles the reservation; an under-estimate admits too
// much):
//
//	anthropic 1.20  (Claude's tokenizer is denser than OpenAI's: more tokens per text)
//	gemini    1.05  (SentencePiece, 256k vocabulary; Google: about 4 characters a token)
//	mistral   1.10  (Tekken, 131k vocabulary)
//	llama     1.05  (Llama 3: tiktoken-based, 128k vocabulary)
//	other     1.20
const (
	lettersPerToken  = 7
	punctPerToken    = 2.0
	alphabeticWeight = 1.6
	cjkTokens        = 0.6
	symbolTokens     = 1.5
	otherFactor      = 1.20
)

type family struct {
	name     string
	prefixes []string
	factor   float64
}

var families = []family{
	{"anthropic", []string{"claude", "anthropic."}, 1.20},
	{"gemini", []string{"gemini", "gemma", "models/gemini"}, 1.05},
	{"mistral", []string{"mistral", "mixtral", "codestral", "ministral", "magistral", "pixtral", "devstral", "open-mistral", "open-mixtral"}, 1.10},
	{"llama", []string{"llama", "meta-llama", "llama3", "llama-3", "codellama"}, 1.05},
}

// estimateText is the estimate of s's o200k_base tokens, unscaled.
func estimateText(s string) float64 {
	var n float64
	letters := 0.0 // letters in the current word
	// alpha: the word has a letter of another alphabet, so letters may
	// not be a whole number (else the integer division is the float one).
	alpha := false
	flushWord := func() {
		if letters > 0 {
			if alpha {
				n += 1 + math.Floor((letters-1)/lettersPerToken)
			} else {
				n += float64(1 + (int(letters)-1)/lettersPerToken)
			}
			letters, alpha = 0, false
		}
	}
	digits, punct, space := 0, 0, 0
	flushDigits := func() {
		n += float64((digits + 2) / 3)
		digits = 0
	}
	flushPunct := func() {
		if punct > 0 {
			n += math.Ceil(float64(punct) / punctPerToken)
			punct = 0
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
				if digits > 0 {
					flushDigits()
				}
				if punct == 1 && letters == 0 {
					punct = 0 // a mark before a word joins it
				}
				flushPunct()
				space = 0 // one space before a word joins it
				letters++
				// The rest of the word's ASCII letters, at once: nothing
				// else changes while they last. Adding them in one sum
				// is exact while letters holds a whole number; after a
				// letter of another alphabet they are added one by one,
				// as they round.
				j := i
				for j < len(s) && s[j]|0x20 >= 'a' && s[j]|0x20 <= 'z' {
					j++
				}
				if !alpha {
					letters += float64(j - i)
				} else {
					for range j - i {
						letters++
					}
				}
				i = j
			case c >= '0' && c <= '9':
				flushWord()
				flushPunct()
				space = 0
				digits++
			case c == ' ' || c == '\t' || c == '\n' || c == '\r':
				flushWord()
				if digits > 0 {
					flushDigits()
				}
				flushPunct()
				if space == 0 {
					n++ // the run costs one token unless a word absorbs its last space
				}
				space++
				if c == ' ' && space == 1 {
					n-- // a single space before a word or mark is absorbed
				}
			default:
				flushWord()
				if digits > 0 {
					flushDigits()
				}
				space = 0
				punct++
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r >= 0x2E80 && unicode.IsLetter(r) || unicode.Is(unicode.Hangul, r):
			flushWord()
			flushPunct()
			space = 0
			n += cjkTokens
		case unicode.IsLetter(r) || unicode.IsMark(r):
			if digits > 0 {
				flushDigits()
			}
			flushPunct()
			space = 0
			letters += alphabeticWeight
			alpha = true
		default:
			flushWord()
			flushPunct()
			space = 0
			n += symbolTokens
		}
	}
	flushWord()
	if digits > 0 {
		flushDigits()
	}
	flushPunct()
	return n
}

// scaled is ceil(x·f), at least 1 for a non-empty text.
func scaled(x, f float64) int {
	return max(1, int(math.Ceil(x*f)))
}
