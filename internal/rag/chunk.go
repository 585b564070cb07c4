package rag

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Section is a run of text under one heading path, as a reader found it
// in a document (a Markdown section, an HTML section, a page of a PDF).
type Section struct {
	// Headings is the path of headings above the text, outermost first.
	Headings []string
	// Text is the section's text; paragraphs are separated by blank lines.
	Text string
}

// Chunk is a piece of a document, the unit that is indexed and retrieved.
type Chunk struct {
	// Index is the chunk's position in its document, from 0.
	Index int `json:"index"`
	// Header is the contextual header in front of the text: the
	// document's title and the heading path ("Title: …\nSection: A > B").
	Header string `json:"header,omitempty"`
	// Text is the chunk's own text.
	Text string `json:"text"`
}

// Content is what is indexed and injected: the header, a blank line, the
// text.
func (c *Chunk) Content() string {
	if c.Header == "" {
		return c.Text
	}
	return c.Header + "\n\n" + c.Text
}

// Chunker splits documents into chunks of at most Size estimated tokens of
// text (the header is not counted), cutting at paragraph boundaries, else
// at sentence boundaries, else at word boundaries; consecutive chunks of a
// section share up to Overlap tokens (whole sentences or paragraphs at the
// end of the previous chunk). A chunk never spans two sections, so each
// has one heading path.
type Chunker struct {
	Size, Overlap int
}

// Default chunk sizes, in estimated tokens.
const (
	DefaultChunkSize    = 400
	DefaultChunkOverlap = 60
)

// Split returns the chunks of a document titled title made of sections.
func (c Chunker) Split(title string, sections []Section) []Chunk {
	size, overlap := c.Size, c.Overlap
	if size <= 0 {
		size = DefaultChunkSize
	}
	if overlap < 0 || overlap >= size {
		overlap = 0
	}
	var out []Chunk
	for _, s := range sections {
		header := chunkHeader(title, s.Headings)
		units := splitUnits(s.Text, size)
		var cur []string
		curTok := 0
		flush := func() {
			if len(cur) == 0 {
				return
			}
			out = append(out, Chunk{Index: len(out), Header: header, Text: strings.Join(cur, "\n\n")})
		}
		for _, u := range units {
			t := EstimateTokens(u)
			if curTok > 0 && curTok+t > size {
				flush()
				// Carry the tail of the chunk just cut, up to overlap tokens.
				var keep []string
				kt := 0
				for i := len(cur) - 1; i >= 0; i-- {
					ut := EstimateTokens(cur[i])
					if kt+ut > overlap || kt+ut+t > size {
						// Too long a unit: carry its last sentences.
						ss := sentences(cur[i])
						j := len(ss)
						for j > 0 && kt+EstimateTokens(strings.Join(ss[j-1:], " "))+t <= size &&
							EstimateTokens(strings.Join(ss[j-1:], " ")) <= overlap-kt {
							j--
						}
						if j < len(ss) {
							tail := strings.Join(ss[j:], " ")
							keep = append([]string{tail}, keep...)
							kt += EstimateTokens(tail)
						}
						break
					}
					keep = append([]string{cur[i]}, keep...)
					kt += ut
				}
				cur, curTok = keep, kt
			}
			cur = append(cur, u)
			curTok += t
		}
		flush()
	}
	return out
}

// chunkHeader is the contextual header of a chunk.
func chunkHeader(title string, headings []string) string {
	var b strings.Builder
	if title != "" {
		b.WriteString("Title: ")
		b.WriteString(title)
	}
	var path []string
	for _, h := range headings {
		if h != "" && h != title {
			path = append(path, h)
		}
	}
	if len(path) > 0 {
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString("Section: ")
		b.WriteString(strings.Join(path, " > "))
	}
	return b.String()
}

// splitUnits cuts text into paragraphs, and paragraphs longer than size
// tokens into sentences (then words), so that no unit exceeds size.
func splitUnits(text string, size int) []string {
	var units []string
	for _, p := range paragraphs(text) {
		if EstimateTokens(p) <= size {
			units = append(units, p)
			continue
		}
		var cur strings.Builder
		for _, s := range sentences(p) {
			if EstimateTokens(s) > size {
				if cur.Len() > 0 {
					units = append(units, cur.String())
					cur.Reset()
				}
				units = append(units, splitWords(s, size)...)
				continue
			}
			if cur.Len() > 0 && EstimateTokens(cur.String())+EstimateTokens(s)+1 > size {
				units = append(units, cur.String())
				cur.Reset()
			}
			if cur.Len() > 0 {
				cur.WriteByte(' ')
			}
			cur.WriteString(s)
		}
		if cur.Len() > 0 {
			units = append(units, cur.String())
		}
	}
	return units
}

// paragraphs splits at blank lines and trims each paragraph.
func paragraphs(text string) []string {
	var out []string
	var cur []string
	for _, line := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		if strings.TrimSpace(line) == "" {
			if len(cur) > 0 {
				out = append(out, strings.TrimSpace(strings.Join(cur, "\n")))
				cur = cur[:0]
			}
			continue
		}
		cur = append(cur, line)
	}
	if len(cur) > 0 {
		out = append(out, strings.TrimSpace(strings.Join(cur, "\n")))
	}
	return out
}

// sentences splits a paragraph after '.', '!' or '?' followed by white
// space and an upper-case letter, digit or opening mark.
func sentences(p string) []string {
	var out []string
	start := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '.' && c != '!' && c != '?' {
			continue
		}
		j := i + 1
		for j < len(p) && (p[j] == '"' || p[j] == '\'' || p[j] == ')') {
			j++
		}
		k := j
		for k < len(p) && (p[k] == ' ' || p[k] == '\n' || p[k] == '\t') {
			k++
		}
		if k == j || k >= len(p) {
			continue
		}
		r, _ := utf8.DecodeRuneInString(p[k:])
		if unicode.IsUpper(r) || unicode.IsDigit(r) || r == '(' || r == '"' || r == '`' || r == '*' || r == '-' {
			out = append(out, strings.TrimSpace(p[start:j]))
			start = k
			i = k - 1
		}
	}
	if rest := strings.TrimSpace(p[start:]); rest != "" {
		out = append(out, rest)
	}
	return out
}

// splitWords cuts s at spaces into pieces of at most size tokens (a word
// longer than that is cut at a rune boundary).
func splitWords(s string, size int) []string {
	max := size * bytesPerToken
	var out []string
	for len(s) > max {
		cut := strings.LastIndexByte(s[:max], ' ')
		if cut <= 0 {
			cut = max
			for cut > 0 && !utf8.RuneStart(s[cut]) {
				cut--
			}
			if cut == 0 {
				cut = max
			}
		}
		out = append(out, strings.TrimSpace(s[:cut]))
		s = strings.TrimSpace(s[cut:])
	}
	if s != "" {
		out = append(out, s)
	}
	return out
}
