package guardrails

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"
)

// Vault holds one request's masked values: each distinct value detected
// gets one placeholder, [<DETECTOR>_<n>] (e.g. [EMAIL_1]), the same
// wherever the value occurs in the request.
type Vault struct {
	byValue map[string]string
	byPH    map[string]string
	next    map[string]int // per detector: placeholders handed out
	// Counts is what was masked, per detector, in occurrences.
	Counts map[string]int
	// longest is the longest placeholder (the restorer holds back at
	// most this many bytes).
	longest int
	// avoid is the request's body: a placeholder it already holds (the
	// client wrote "[EMAIL_1]" itself) is skipped, so that restoring never
	// rewrites the client's own text.
	avoid []byte
}

// Len is the number of distinct masked values.
func (v *Vault) Len() int {
	if v == nil {
		return 0
	}
	return len(v.byPH)
}

// placeholder returns the placeholder of value, found by detector.
func (v *Vault) placeholder(detector, value string) string {
	if v.byValue == nil {
		v.byValue, v.byPH, v.next, v.Counts = map[string]string{}, map[string]string{}, map[string]int{}, map[string]int{}
	}
	v.Counts[detector]++
	if ph, ok := v.byValue[value]; ok {
		return ph
	}
	var ph string
	for {
		v.next[detector]++
		ph = "[" + strings.ToUpper(detector) + "_" + strconv.Itoa(v.next[detector]) + "]"
		if !bytes.Contains(v.avoid, []byte(ph)) {
			break
		}
	}
	v.byValue[value], v.byPH[ph] = ph, value
	v.longest = max(v.longest, len(ph))
	return ph
}

// Value returns what placeholder ph stands for.
func (v *Vault) Value(ph string) (string, bool) {
	s, ok := v.byPH[ph]
	return s, ok
}

// isPHChar reports whether c may appear between a placeholder's brackets.
func isPHChar(c byte) bool { return isUpper(c) || isDigit(c) || c == '_' }

// Restore replaces every placeholder of v in s by its value; esc says
// whether s is JSON text (values are then written escaped).
func (v *Vault) Restore(s string, esc bool) string {
	if v.Len() == 0 || strings.IndexByte(s, '[') < 0 {
		return s
	}
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '[' {
			continue
		}
		j := i + 1
		for j < len(s) && j-i <= v.longest && isPHChar(s[j]) {
			j++
		}
		if j >= len(s) || s[j] != ']' {
			continue
		}
		val, ok := v.byPH[s[i:j+1]]
		if !ok {
			continue
		}
		if b.Len() == 0 {
			b.Grow(len(s) + 64)
		}
		b.WriteString(s[last:i])
		if esc {
			b.Write(appendEscaped(nil, val))
		} else {
			b.WriteString(val)
		}
		last = j + 1
		i = j
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// pendingPrefix returns the length of the longest suffix of s that could
// begin one of v's placeholders (a '[' and placeholder characters, shorter
// than the longest placeholder), 0 when none.
func (v *Vault) pendingPrefix(s string) int {
	start := max(0, len(s)-v.longest+1)
	for i := len(s) - 1; i >= start; i-- {
		c := s[i]
		if c == '[' {
			return len(s) - i
		}
		if !isPHChar(c) {
			return 0
		}
	}
	return 0
}

// masker rewrites strings of a JSON body, replacing detected values by
// placeholders.
type masker struct {
	d *Detectors
	// rules are the stage's rules; those that apply to the request are
	// on: rules[i] when bit i is set (every rule when all are).
	rules []Rule
	on    uint64
	// vault is made by mask.
	vault *Vault
	// found counts detections per action and detector.
	found map[Action]map[string]int
}

// act is the action the rules take on what detector finds: block over
// route over mask.
func (m *masker) act(detector string) Action {
	best := ActionNone
	for i, r := range m.rules {
		if m.on&(1<<(i%64)) != 0 && r.Action > best && (slices.Contains(r.Detectors, detector) || slices.Contains(r.Detectors, "all")) {
			best = r.Action
		}
	}
	return best
}

func (m *masker) note(a Action, det string) {
	if m.found == nil {
		m.found = map[Action]map[string]int{}
	}
	if m.found[a] == nil {
		m.found[a] = map[string]int{}
	}
	m.found[a][det]++
}

// skipKeys are members whose string values are not prompt text.
var skipKeys = map[string]bool{"role": true, "type": true, "id": true, "tool_call_id": true, "model": true,
	"url": true, "image_url": true, "data": true, "file_data": true, "detail": true, "format": true, "call_id": true,
	"cache_control": true, "media_type": true, "file_id": true,
	// Anthropic's native body: ids, and signed thinking blocks that must
	// reach the upstream as they were.
	"tool_use_id": true, "thinking": true, "signature": true}

// promptKeys are the top-level members that carry the prompt.
var promptKeys = map[string]bool{"messages": true, "prompt": true, "input": true, "instructions": true, "system": true}

// edit replaces body[start:end] with repl.
type edit struct {
	start, end int
	repl       []byte
}

// scan walks the prompt strings of body, calling f with each string value
// and its offset in body.
func scan(body []byte, f func(v gjson.Result, off int)) {
	js := unsafe.String(unsafe.SliceData(body), len(body))
	gjson.Parse(js).ForEach(func(k, v gjson.Result) bool {
		if promptKeys[k.Str] {
			walk(js, v, f)
		}
		return true
	})
}

// walk calls f with every prompt string in v (see scan).
func walk(js string, v gjson.Result, f func(v gjson.Result, off int)) {
	switch {
	case v.Type == gjson.String:
		f(v, offsetIn(js, v.Raw))
	case v.IsArray():
		v.ForEach(func(_, it gjson.Result) bool { walk(js, it, f); return true })
	case v.IsObject():
		v.ForEach(func(k, it gjson.Result) bool {
			if !skipKeys[k.Str] {
				walk(js, it, f)
			}
			return true
		})
	}
}

func offsetIn(s, sub string) int {
	return int(uintptr(unsafe.Pointer(unsafe.StringData(sub))) - uintptr(unsafe.Pointer(unsafe.StringData(s))))
}

// found is one prompt string with the matches an action applies to.
type found struct {
	off, n int    // the string's raw JSON in body
	text   string // its value
	ms     []Match
}

// detect finds the actionable matches in body's prompt strings, noting
// them per action; it returns the strings with their matches, for mask.
func (m *masker) detect(body []byte) []found {
	var out []found
	scan(body, func(v gjson.Result, off int) {
		ms := m.d.Find(v.Str)
		k := 0
		for _, x := range ms {
			a := m.act(x.Detector)
			if a == ActionNone {
				continue
			}
			m.note(a, x.Detector)
			ms[k] = x
			k++
		}
		if k > 0 {
			out = append(out, found{off: off, n: len(v.Raw), text: v.Str, ms: ms[:k]})
		}
	})
	return out
}

// mask returns body with the masked matches of fs replaced by placeholders.
func (m *masker) mask(body []byte, fs []found) []byte {
	if len(fs) == 0 {
		return body
	}
	if m.vault == nil {
		m.vault = new(Vault)
	}
	m.vault.avoid = body
	defer func() { m.vault.avoid = nil }()
	var edits []edit
	for _, f := range fs {
		var b strings.Builder
		last := 0
		for _, x := range f.ms {
			if m.act(x.Detector) != ActionMask {
				continue
			}
			b.WriteString(f.text[last:x.Start])
			b.WriteString(m.vault.placeholder(x.Detector, f.text[x.Start:x.End]))
			last = x.End
		}
		if last == 0 {
			continue
		}
		b.WriteString(f.text[last:])
		repl := append([]byte{'"'}, appendEscaped(nil, b.String())...)
		edits = append(edits, edit{f.off, f.off + f.n, append(repl, '"')})
	}
	return splice(body, edits)
}

func splice(body []byte, edits []edit) []byte {
	if len(edits) == 0 {
		return body
	}
	out := make([]byte, 0, len(body)+64*len(edits))
	last := 0
	for _, e := range edits {
		out = append(out, body[last:e.start]...)
		out = append(out, e.repl...)
		last = e.end
	}
	return append(out, body[last:]...)
}

// appendEscaped appends s escaped for a JSON string (without quotes).
func appendEscaped(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else if r == '\u2028' || r == '\u2029' {
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return dst
}
