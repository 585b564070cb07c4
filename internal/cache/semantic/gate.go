package semantic

import (
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Gate reports whether two user messages may share an answer. Embeddings
// place "turn dark mode on" and "turn dark mode off" next to each other;
// the gate is what tells them apart. It is deliberately conservative: a
// refused paraphrase costs one upstream call, a wrongly shared answer is a
// wrong answer. Two messages pass only if they have:
//
//   - the same numbers, in the same order, whatever their spelling: "3",
//     "3.0", "three"; "1,000", "1000", "a thousand"; "twenty-five", "25";
//     ordinals apart ("3rd", "third"); a sign counts ("-5", "minus 5");
//     decimals keep their digits ("3.10" is not "3.1", as in versions);
//   - the same number of negations: not, n't, never, no, none, without,
//     except, cannot, non-… (and the common negators of French, Spanish,
//     German, Italian, Portuguese, Dutch and Russian);
//   - the same polar words, by class and side: on/enable/activate against
//     off/disable/deactivate, start/stop, show/hide, allow/deny,
//     add/remove, increase/decrease, more/less, max/min, before/after,
//     upload/download, buy/sell, best/worst, … (same-side words are
//     interchangeable: "turn on" and "enable" pass);
//   - the same units and currencies, in canonical form ("km", "kilometres";
//     "$", "USD", "dollars");
//   - the same time words (today, tomorrow, next, last, …);
//   - the same named entities: capitalised words not opening a sentence,
//     acronyms, CamelCase and snake_case identifiers, dotted names and
//     paths, and known names however they are written (languages, tools,
//     countries, cities, months, days, colours); each message's entities
//     must appear in the other, case aside;
//   - the same exact strings: quoted text, `code`, URLs and e-mail
//     addresses, byte for byte (e-mail case aside);
//   - the entities and units in the same order, so "flights from Paris to
//     Rome" and "flights from Rome to Paris", or "miles to km" and "km to
//     miles", differ. This also refuses paraphrases that only reorder
//     ("5 miles in km" and "km in 5 miles");
//   - no swapped content word: the other words (function words and the
//     framing of a request aside, crudely stemmed, a few request synonyms
//     folded: find/search, write/author, …) may be added on one side
//     ("symptoms" / "common symptoms") but not replaced ("cook rice" /
//     "cook pasta", "a dog" / "a cat", "even" / "odd").
//
// What it does not see: the order of plain words ("dog bites man" / "man
// bites dog"; "buy or rent" / "rent or buy"); a refinement that only adds
// a word ("cook rice" / "cook brown rice"); an unknown name typed in lower
// case that the other message also lacks; synonyms outside its short list,
// which it refuses. Those are left to the similarity threshold.
//
// The word lists are English. Text with letters of a script without case
// (Chinese, Japanese, Korean, Arabic, Hebrew, Indic, Thai, …), where none
// of these rules can see entities or negations, passes only when both
// messages are equal after case folding and dropping spaces and
// punctuation.
//
// Messages longer than MaxText bytes never pass.
func Gate(a, b string) bool {
	if len(a) > MaxText || len(b) > MaxText {
		return false
	}
	fa, fb := analyse(a), analyse(b)
	return compatible(&fa, &fb)
}

// MaxText bounds the messages the gate compares and the index holds, in
// bytes: the gate's work grows with the product of the two messages'
// lengths, an entry's memory with its message, and a long message's
// embedding says less about any one of its sentences.
const MaxText = 8 << 10

// features is what the gate compares of one message.
type features struct {
	nums     []string // canonical numbers, in order
	neg      int      // negations
	polar    []string // polarity class and side, sorted
	units    []string // canonical units, sorted
	temporal []string // time words, sorted
	exact    []string // quoted strings, code, URLs, e-mail addresses
	entities []string // lower case, deduplicated, in order of appearance
	words    []word   // every word, lower case, in order
	anchors  []string // entities and units (as unitWord) in order of first appearance
	content  []string // other words, stemmed, sorted, deduplicated
	caseless string   // the folded text, when it has caseless letters
	raw      string
}

type word struct {
	s   string
	pos int // token index; the parts of one token share it
}

// compatible is Gate over analysed messages.
func compatible(a, b *features) bool {
	if a.caseless != "" || b.caseless != "" {
		return a.caseless == b.caseless
	}
	if a.neg != b.neg ||
		!slices.Equal(a.nums, b.nums) ||
		!slices.Equal(a.polar, b.polar) ||
		!slices.Equal(a.units, b.units) ||
		!slices.Equal(a.temporal, b.temporal) {
		return false
	}
	return exactIn(a.exact, b) && exactIn(b.exact, a) &&
		entitiesIn(a, b) && entitiesIn(b, a) &&
		!swapped(a.content, b.content)
}

// swapped reports whether each side has a content word the other lacks:
// "cook rice" / "cook pasta", "a name for a dog" / "for a cat". A side
// that only adds words ("symptoms of the flu" / "common symptoms of the
// flu") is not a swap.
func swapped(a, b []string) bool {
	return hasMissing(a, b) && hasMissing(b, a)
}

// hasMissing reports whether sorted a has a word not in sorted b.
func hasMissing(a, b []string) bool {
	j := 0
	for _, w := range a {
		for j < len(b) && b[j] < w {
			j++
		}
		if j == len(b) || b[j] != w {
			return true
		}
	}
	return false
}

// exactIn reports whether every exact string occurs in the other message,
// on word boundaries.
func exactIn(exact []string, other *features) bool {
	for _, x := range exact {
		if !containsBounded(other.raw, x) {
			return false
		}
	}
	return true
}

// entitiesIn reports whether each of a's entities occurs among b's words
// and a's anchors occur in b in the same order (as a subsequence of b's
// words).
func entitiesIn(a, b *features) bool {
	for _, e := range a.entities {
		if b.wordAt(e, 0) < 0 {
			return false
		}
	}
	from := 0
	for _, an := range a.anchors {
		p := b.wordAt(an, from)
		if p < 0 {
			return false
		}
		from = p
	}
	return true
}

// wordAt returns the token index of the first word s at or after token
// from, or -1.
func (f *features) wordAt(s string, from int) int {
	for _, w := range f.words {
		if w.pos >= from && w.s == s {
			return w.pos
		}
	}
	return -1
}

// unitWord is how a unit is recorded among the words: a NUL byte before
// its canonical name, so that no word can be mistaken for one.
func unitWord(u string) string { return "\x00" + u }

// containsBounded reports whether needle occurs in hay with no letter,
// digit or underscore right before or after it.
func containsBounded(hay, needle string) bool {
	if needle == "" {
		return true
	}
	for off := 0; ; {
		i := strings.Index(hay[off:], needle)
		if i < 0 {
			return false
		}
		i += off
		end := i + len(needle)
		before, _ := utf8.DecodeLastRuneInString(hay[:i])
		after, _ := utf8.DecodeRuneInString(hay[end:])
		if (i == 0 || !isWordRune(before)) && (end == len(hay) || !isWordRune(after)) {
			return true
		}
		off = i + 1
	}
}

func isWordRune(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) }

// hasCaseless reports whether s has a letter of a script without case.
func hasCaseless(s string) bool {
	for _, r := range s {
		if r >= 0x0370 && unicode.IsLetter(r) && !unicode.IsUpper(r) && !unicode.IsLower(r) {
			return true
		}
	}
	return false
}

// fold lower-cases s and drops everything but letters and digits.
func fold(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// analyse extracts the features of one message.
func analyse(s string) features {
	f := features{raw: s}
	if hasCaseless(s) {
		f.caseless = fold(s)
		if f.caseless == "" {
			f.caseless = "\x00"
		}
		return f
	}
	s = f.extractExact(s)
	n := strings.Count(s, " ") + 2
	f.words = make([]word, 0, n+n/4)
	f.content = make([]string, 0, n/2+1)
	a := analyser{f: &f, sentenceStart: true}
	a.scan(s)
	a.endNumber()
	slices.Sort(f.polar)
	slices.Sort(f.units)
	slices.Sort(f.temporal)
	f.temporal = slices.Compact(f.temporal)
	slices.Sort(f.content)
	f.content = slices.Compact(f.content)
	return f
}

// extractExact records quoted strings, `code`, URLs and e-mail addresses,
// and returns s with URLs and addresses blanked (their dots and digits are
// not prose).
func (f *features) extractExact(s string) string {
	// Quoted spans: "…", “…”, `…`, and '…' opened after a space.
	for _, q := range [][2]string{{`"`, `"`}, {"“", "”"}, {"`", "`"}, {"'", "'"}, {"‘", "’"}} {
		for off := 0; off < len(s); {
			i := strings.Index(s[off:], q[0])
			if i < 0 {
				break
			}
			i += off
			if q[0] == "'" || q[0] == "‘" {
				// An apostrophe (don't, the users') is not a quote.
				if r, _ := utf8.DecodeLastRuneInString(s[:i]); i > 0 && isWordRune(r) {
					off = i + len(q[0])
					continue
				}
			}
			start := i + len(q[0])
			j := strings.Index(s[start:], q[1])
			if q[1] == "'" || q[1] == "’" {
				j = closingQuote(s[start:], q[1])
			}
			if j < 0 {
				break
			}
			if inner := strings.TrimSpace(s[start : start+j]); inner != "" {
				f.exact = append(f.exact, inner)
			}
			off = start + j + len(q[1])
		}
	}
	if !strings.Contains(s, "://") && !strings.Contains(s, "www.") && !strings.Contains(s, "@") {
		return s
	}
	fields := strings.Fields(s)
	for _, fl := range fields {
		t := strings.TrimRight(strings.TrimLeft(fl, `("'<[`), `.,;:!?)"'>]`)
		lower := strings.ToLower(t)
		switch {
		case strings.Contains(t, "://") || strings.HasPrefix(lower, "www."):
			f.exact = append(f.exact, t)
		case strings.HasPrefix(t, "@") && len(t) > 1:
			f.exact = append(f.exact, t) // a mention
		case strings.Count(t, "@") == 1 && strings.Contains(t[strings.IndexByte(t, '@'):], ".") && !strings.HasPrefix(t, "@"):
			f.exact = append(f.exact, lower)
			f.raw = strings.Replace(f.raw, t, lower, 1)
		default:
			continue
		}
		s = strings.Replace(s, t, strings.Repeat(" ", len(t)), 1)
	}
	return s
}

// closingQuote finds a closing single quote: one not followed by a letter
// (so "it's" inside the quote does not end it).
func closingQuote(s, q string) int {
	for off := 0; off < len(s); {
		i := strings.Index(s[off:], q)
		if i < 0 {
			return -1
		}
		i += off
		r, _ := utf8.DecodeRuneInString(s[i+len(q):])
		if i+len(q) == len(s) || !isWordRune(r) {
			return i
		}
		off = i + len(q)
	}
	return -1
}

// analyser walks the tokens of one message.
type analyser struct {
	f             *features
	pos           int  // token index
	sentenceStart bool // the next token opens a sentence
	lastNum       bool // the previous token was a number
	recent        [3]string
	// A number being spelled in words ("twenty five", "one hundred and
	// five"): its value so far and whether it is open.
	spell    int64
	spellCur int64
	spelling bool
}

// scan splits s into tokens: runs of letters, digits and the joiners that
// sit between them (3.5, don't, snake_case, os.path, 2024-01-05, km/h),
// with a leading currency sign or minus and trailing %, ++ or #.
func (a *analyser) scan(s string) {
	i := 0
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		start := i
		if !tokenStart(r, s[i+n:]) {
			if strings.ContainsRune(".!?;:\n•", r) {
				a.sentenceStart = true
				a.endNumber()
				a.lastNum = false
			}
			if r == ',' || r == '(' || r == ')' {
				a.endNumber()
			}
			i += n
			continue
		}
		i += n
		for i < len(s) {
			r, n := utf8.DecodeRuneInString(s[i:])
			if isWordRune(r) || r == '°' {
				i += n
				continue
			}
			if strings.ContainsRune(".,'’-_/:", r) {
				next, _ := utf8.DecodeRuneInString(s[i+n:])
				if isWordRune(next) && (r != ',' || thousandsGroup(s[i+n:])) {
					i += n
					continue
				}
			}
			break
		}
		// Trailing marks that belong to the token.
		switch {
		case strings.HasPrefix(s[i:], "++"):
			i += 2
		case strings.HasPrefix(s[i:], "#") || strings.HasPrefix(s[i:], "%"):
			i++
		}
		end := i
		// Is the token the last of its clause? (for "turn it on.")
		rest := strings.TrimLeft(s[end:], " \t")
		clauseEnd := rest == "" || strings.ContainsAny(rest[:1], ".!?,;:\n)")
		a.token(s[start:end], clauseEnd)
		a.sentenceStart = false
	}
}

// tokenStart reports whether r (followed by rest) begins a token.
func tokenStart(r rune, rest string) bool {
	if isWordRune(r) {
		return true
	}
	next, _ := utf8.DecodeRuneInString(rest)
	if strings.ContainsRune("$€£¥₹₩₽₿", r) {
		return true
	}
	if strings.ContainsRune("-−+", r) {
		return unicode.IsDigit(next)
	}
	if r == '°' {
		return unicode.IsLetter(next)
	}
	return false
}

// thousandsGroup reports whether s starts with exactly three digits, as
// after the comma of "1,000".
func thousandsGroup(s string) bool {
	if len(s) < 3 {
		return false
	}
	for k := 0; k < 3; k++ {
		if s[k] < '0' || s[k] > '9' {
			return false
		}
	}
	return len(s) == 3 || s[3] < '0' || s[3] > '9'
}

// token handles one token.
func (a *analyser) token(t string, clauseEnd bool) {
	pos := a.pos
	a.pos++
	lower := strings.ToLower(strings.ReplaceAll(t, "’", "'"))

	// A leading currency sign or sign.
	r, n := utf8.DecodeRuneInString(lower)
	switch {
	case strings.ContainsRune("$€£¥₹₩₽₿", r):
		a.unit(units[string(r)], pos)
		if lower = lower[n:]; lower != "" {
			a.numeric(lower, pos, "")
		}
		return
	case r == '-' || r == '−' || r == '+':
		sign := ""
		if r != '+' {
			sign = "-"
		}
		a.numeric(lower[n:], pos, sign)
		return
	}
	if unicode.IsDigit(r) {
		a.numeric(lower, pos, "")
		return
	}
	if hasDigit(lower) {
		// Letters then digits: a model, product or identifier (gpt-4o,
		// ipv6, h2o, covid-19). One word, one entity.
		a.endNumber()
		a.lastNum = false
		a.addWord(lower, pos)
		a.entity(lower)
		return
	}
	if strings.ContainsAny(lower, "_./:") || strings.HasSuffix(lower, "++") || strings.HasSuffix(lower, "#") {
		// Identifier, dotted name, path, or c++ / c#.
		if lower == "e.g" || lower == "i.e" || lower == "a.m" || lower == "p.m" {
			a.word(t, lower, pos, clauseEnd)
			return
		}
		a.endNumber()
		a.lastNum = false
		a.addWord(lower, pos)
		if u, ok := units[lower]; ok {
			a.unit(u, pos)
			return
		}
		a.entity(lower)
		return
	}
	if strings.Contains(lower, "-") {
		// Hyphenated: each part is a word of its own (twenty-five,
		// non-blocking, Wi-Fi); the whole is a word too.
		a.addWord(lower, pos)
		parts := strings.Split(t, "-")
		for k, p := range parts {
			a.word(p, strings.ToLower(p), pos, clauseEnd && k == len(parts)-1)
		}
		return
	}
	a.word(t, lower, pos, clauseEnd)
}

func hasDigit(s string) bool {
	return strings.ContainsFunc(s, unicode.IsDigit)
}

// word handles a token (or a hyphenated part) of letters.
func (a *analyser) word(t, lower string, pos int, clauseEnd bool) {
	f := a.f
	if lower == "" {
		return
	}
	// Contractions.
	base := lower
	switch {
	case strings.HasSuffix(lower, "n't"):
		f.neg++
		base = strings.TrimSuffix(lower, "n't")
	case strings.HasSuffix(lower, "'s"), strings.HasSuffix(lower, "'d"), strings.HasSuffix(lower, "'m"):
		base = lower[:len(lower)-2]
	case strings.HasSuffix(lower, "'re"), strings.HasSuffix(lower, "'ll"), strings.HasSuffix(lower, "'ve"):
		base = lower[:len(lower)-3]
	case strings.HasSuffix(lower, "s'"):
		base = lower[:len(lower)-1]
	}
	if base == "cannot" {
		f.neg++
		base = "can"
	}
	t = t[:min(len(t), len(base))]
	a.addWord(base, pos)
	defer func() { a.recent = [3]string{a.recent[1], a.recent[2], base} }()

	if a.numberWord(base, pos) {
		return
	}
	a.endNumber()
	wasNum := a.lastNum
	a.lastNum = false

	if negators[base] {
		f.neg++
		return
	}
	if u, ok := units[base]; ok && (wasNum || !shortUnits[base]) {
		a.unit(u, pos)
		return
	}
	if base == "on" {
		if clauseEnd || toggleVerbs[a.recent[0]] || toggleVerbs[a.recent[1]] || toggleVerbs[a.recent[2]] {
			f.polar = append(f.polar, polarity["on"])
		}
		return
	}
	if c, ok := polarity[base]; ok {
		f.polar = append(f.polar, c)
	}
	if temporal[base] {
		f.temporal = append(f.temporal, base)
		return
	}
	if notEntities[base] {
		return
	}
	switch {
	case gazetteer[base]:
		a.entity(base)
	case !a.sentenceStart && startsUpper(t):
		a.entity(base)
	case isAcronym(t) || hasInnerUpper(t):
		a.entity(base)
	}
	if _, polar := polarity[base]; !polar && !stopwords[base] && len(base) > 1 {
		f.content = append(f.content, stem(base))
	}
}

// stem reduces a content word to a crude stem, the same for the forms a
// rewording uses ("eggs"/"egg", "eating"/"eat", "summarise"/"summarize").
func stem(w string) string {
	for _, s := range [][2]string{{"ising", "izing"}, {"ised", "ized"}, {"ise", "ize"}, {"isation", "ization"}} {
		if strings.HasSuffix(w, s[0]) && len(w) > len(s[0])+2 {
			w = strings.TrimSuffix(w, s[0]) + s[1]
			break
		}
	}
	n := len(w)
	switch {
	case n > 4 && strings.HasSuffix(w, "ies"):
		w = w[:n-3] + "y"
	case n > 4 && (strings.HasSuffix(w, "ches") || strings.HasSuffix(w, "shes") || strings.HasSuffix(w, "sses") || strings.HasSuffix(w, "xes")):
		w = w[:n-2]
	case n > 3 && strings.HasSuffix(w, "s") && !strings.HasSuffix(w, "ss") && !strings.HasSuffix(w, "us") && !strings.HasSuffix(w, "is"):
		w = w[:n-1]
	case n > 5 && strings.HasSuffix(w, "ing"):
		w = w[:n-3]
	case n > 4 && strings.HasSuffix(w, "ed"):
		w = w[:n-2]
	}
	w = strings.TrimSuffix(w, "e")
	if s, ok := synonyms[w]; ok {
		return s
	}
	if s, ok := synonyms[w+"e"]; ok {
		return s
	}
	return w
}

// numberWord folds number words into the number being spelled; it reports
// whether base was one.
func (a *analyser) numberWord(base string, pos int) bool {
	f := a.f
	if v, ok := numberWords[base]; ok {
		if a.spelling && a.spellCur%10 == 0 && a.spellCur >= 20 && v < 10 {
			a.spellCur += v // twenty five
			return true
		}
		if a.spelling && a.spellCur == 0 {
			a.spellCur = v // one hundred and five
			return true
		}
		a.endNumber()
		a.spelling, a.spell, a.spellCur = true, 0, v
		return true
	}
	if v, ok := scaleWords[base]; ok {
		switch {
		case a.spelling:
			if v == 100 {
				a.spellCur *= v
			} else {
				a.spell += max(a.spellCur, 1) * v
				a.spellCur = 0
			}
		case a.lastNum && len(f.nums) > 0:
			// "3 million", "2.5 thousand"
			last := f.nums[len(f.nums)-1]
			if x, err := strconv.ParseFloat(last, 64); err == nil {
				f.nums[len(f.nums)-1] = canonical(x * float64(v))
			}
		default:
			// "a hundred", "thousand"
			a.spelling, a.spell, a.spellCur = true, 0, v
		}
		return true
	}
	if base == "and" && a.spelling && (a.spell > 0 || a.spellCur >= 100) {
		return true
	}
	if base == "a" || base == "an" {
		// "a hundred": let the scale word see it; otherwise nothing.
		return false
	}
	if s, ok := pluralScales[base]; ok {
		a.endNumber()
		f.nums = append(f.nums, s)
		return true
	}
	if s, ok := ordinalWords[base]; ok {
		a.endNumber()
		f.nums = append(f.nums, s)
		return true
	}
	if s, ok := fractionWords[base]; ok {
		a.endNumber()
		f.nums = append(f.nums, s)
		a.lastNum = true
		return true
	}
	if base == "minus" || base == "negative" {
		// A sign when a number follows; also polar (plus/minus).
		a.endNumber()
	}
	return false
}

// endNumber closes a number being spelled in words.
func (a *analyser) endNumber() {
	if !a.spelling {
		return
	}
	a.spelling = false
	a.f.nums = append(a.f.nums, strconv.FormatInt(a.spell+a.spellCur, 10))
	a.lastNum = true
}

// numeric handles a token that starts with a digit (after any sign).
func (a *analyser) numeric(t string, pos int, sign string) {
	a.endNumber()
	a.addWord(t, pos)
	if strings.Count(t, ".") >= 2 && !strings.ContainsAny(t, "-/:") {
		// A version or an address: 1.2.3, 10.0.0.1.
		a.entity(t)
		a.lastNum = false
		return
	}
	// Dates, times, ranges and fractions: each part on its own.
	parts := strings.FieldsFunc(t, func(r rune) bool { return r == '-' || r == '/' || r == ':' })
	for k, p := range parts {
		if k > 0 {
			sign = ""
		}
		a.numberPart(p, pos, sign)
	}
}

// numberPart handles one number with an optional suffix ("5km", "3rd",
// "10%", "2x", "1080p").
func (a *analyser) numberPart(p string, pos int, sign string) {
	f := a.f
	i := 0
	for i < len(p) && (p[i] >= '0' && p[i] <= '9' || p[i] == ',' || p[i] == '.') {
		i++
	}
	digits, suffix := strings.TrimRight(p[:i], ".,"), p[i:]
	if digits == "" {
		// A word after a hyphen (5-star): a word.
		a.word(suffix, suffix, pos, false)
		return
	}
	num := canonicalDigits(digits)
	switch {
	case suffix == "":
	case suffix == "st" || suffix == "nd" || suffix == "rd" || suffix == "th":
		f.nums = append(f.nums, "#"+num)
		a.lastNum = false
		return
	case units[suffix] != "":
		defer a.unit(units[suffix], pos)
	default:
		// 1080p, 3d: an identifier.
		a.addWord(p, pos)
		a.entity(p)
		a.lastNum = false
		return
	}
	if sign == "" && len(a.recent) > 0 && (a.recent[2] == "minus" || a.recent[2] == "negative") {
		sign = "-"
	}
	if num == "0" {
		sign = ""
	}
	f.nums = append(f.nums, sign+num)
	a.lastNum = true
}

// canonicalDigits spells a digit string canonically: no thousands
// separators or leading zeros, and no fraction when it is all zeros ("3.0"
// is "3"); other fractions keep their digits ("3.10" stays).
func canonicalDigits(d string) string {
	d = strings.ReplaceAll(d, ",", "")
	intPart, frac, hasFrac := strings.Cut(d, ".")
	intPart = strings.TrimLeft(intPart, "0")
	if intPart == "" {
		intPart = "0"
	}
	if !hasFrac || strings.Trim(frac, "0") == "" {
		return intPart
	}
	return intPart + "." + frac
}

// canonical spells a computed value ("2.5 million").
func canonical(x float64) string {
	return canonicalDigits(strconv.FormatFloat(x, 'f', -1, 64))
}

func (a *analyser) addWord(s string, pos int) {
	a.f.words = append(a.f.words, word{s: s, pos: pos})
}

func (a *analyser) unit(u string, pos int) {
	f := a.f
	f.units = append(f.units, u)
	w := unitWord(u)
	f.words = append(f.words, word{s: w, pos: pos})
	if !slices.Contains(f.anchors, w) {
		f.anchors = append(f.anchors, w)
	}
}

func (a *analyser) entity(e string) {
	f := a.f
	if slices.Contains(f.entities, e) {
		return
	}
	f.entities = append(f.entities, e)
	f.anchors = append(f.anchors, e)
}

func startsUpper(t string) bool {
	r, _ := utf8.DecodeRuneInString(t)
	return unicode.IsUpper(r)
}

// isAcronym: two or more letters, all upper case (AWS, NYC).
func isAcronym(t string) bool {
	n := 0
	for _, r := range t {
		if !unicode.IsUpper(r) {
			return false
		}
		n++
	}
	return n >= 2
}

// hasInnerUpper: an upper-case letter after a lower-case one (iPhone,
// JavaScript, getUser).
func hasInnerUpper(t string) bool {
	prevLower := false
	for _, r := range t {
		if unicode.IsUpper(r) && prevLower {
			return true
		}
		prevLower = unicode.IsLower(r)
	}
	return false
}
