package guardrails

import (
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// The built-in detectors' names. Custom detectors are named by their
// configuration.
const (
	DetectEmail  = "email"
	DetectPhone  = "phone"
	DetectCard   = "card"
	DetectIBAN   = "iban"
	DetectSSN    = "ssn"
	DetectIP     = "ip"
	DetectSecret = "secret"
)

// Builtin lists the built-in detectors, in the order their matches win
// over overlapping ones.
var Builtin = []string{DetectSecret, DetectEmail, DetectIBAN, DetectCard, DetectSSN, DetectIP, DetectPhone}

// Match is one detected value: s[Start:End] in the scanned text.
type Match struct {
	Start, End int
	Detector   string
}

// Custom is a detector defined by a regular expression.
type Custom struct {
	Name string
	Re   *regexp.Regexp
}

// Detectors finds personal data and secrets in text. Build one with
// NewDetectors; it is safe for concurrent use.
type Detectors struct {
	on map[string]bool
	// the built-in detectors on, for the scanning loops
	card, ssn, ip, phone bool
	regions              []string // phone regions tried for numbers without '+'
	custom               []Custom
}

// DefaultPhoneRegions are the regions whose national formats the phone
// detector accepts for numbers written without a country code.
var DefaultPhoneRegions = []string{"US", "GB", "DE", "FR"}

// NewDetectors returns the detectors named in names (built-in names or
// custom ones; "all" is every built-in and custom detector), trying
// regions (default DefaultPhoneRegions) for phone numbers written without
// a country code.
func NewDetectors(names []string, custom []Custom, regions []string) *Detectors {
	d := &Detectors{on: map[string]bool{}, regions: regions, custom: custom}
	if len(d.regions) == 0 {
		d.regions = DefaultPhoneRegions
	}
	for _, n := range names {
		if n == "all" {
			for _, b := range Builtin {
				d.on[b] = true
			}
			for _, c := range custom {
				d.on[c.Name] = true
			}
			continue
		}
		d.on[n] = true
	}
	d.card, d.ssn, d.ip, d.phone = d.on[DetectCard], d.on[DetectSSN], d.on[DetectIP], d.on[DetectPhone]
	return d
}

// Find returns the non-overlapping matches in s, by position; where two
// overlap, the one of the detector listed first in Builtin wins (custom
// detectors come first of all).
func (d *Detectors) Find(s string) []Match {
	var ms []Match
	for _, c := range d.custom {
		if d.on[c.Name] {
			for _, loc := range c.Re.FindAllStringIndex(s, -1) {
				if loc[1] > loc[0] {
					ms = append(ms, Match{loc[0], loc[1], c.Name})
				}
			}
		}
	}
	if d.on[DetectSecret] {
		ms = findSecrets(s, ms)
	}
	if d.on[DetectEmail] {
		ms = findEmails(s, ms)
	}
	if d.on[DetectIBAN] {
		ms = findIBANs(s, ms)
	}
	if d.card || d.ssn || d.ip || d.phone {
		ms = d.findNumbers(s, ms)
	}
	if d.on[DetectIP] {
		ms = findIPv6(s, ms)
	}
	if len(ms) < 2 {
		return ms
	}
	// Keep, in priority order (the order found), those that overlap no
	// kept one; then order by position.
	slices.SortStableFunc(ms, func(a, b Match) int { return rank(a.Detector) - rank(b.Detector) })
	kept := ms[:0:0]
	for _, m := range ms {
		if !slices.ContainsFunc(kept, func(k Match) bool { return m.Start < k.End && k.Start < m.End }) {
			kept = append(kept, m)
		}
	}
	slices.SortFunc(kept, func(a, b Match) int { return a.Start - b.Start })
	return kept
}

// rank orders detectors for overlaps: custom ones first, then Builtin's
// order.
func rank(name string) int {
	if i := slices.Index(Builtin, name); i >= 0 {
		return i + 1
	}
	return 0
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isAlnum(c byte) bool  { return isDigit(c) || isLetter(c) }
func isUpper(c byte) bool  { return c >= 'A' && c <= 'Z' }

// --- e-mail ---

func isLocal(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-' || c == '\''
}
func isDomain(c byte) bool { return isAlnum(c) || c == '.' || c == '-' }

func findEmails(s string, ms []Match) []Match {
	for off := 0; ; {
		i := strings.IndexByte(s[off:], '@')
		if i < 0 {
			return ms
		}
		at := off + i
		off = at + 1
		start := at
		for start > 0 && isLocal(s[start-1]) {
			start--
		}
		for start < at && (s[start] == '.' || s[start] == '\'') {
			start++
		}
		end := at + 1
		for end < len(s) && isDomain(s[end]) {
			end++
		}
		for end > at+1 && (s[end-1] == '.' || s[end-1] == '-') {
			end--
		}
		if start == at || end == at+1 {
			continue
		}
		dom := s[at+1 : end]
		dot := strings.LastIndexByte(dom, '.')
		if dot <= 0 || len(dom)-dot-1 < 2 || strings.Contains(dom, "..") || dom[0] == '-' || dom[0] == '.' {
			continue
		}
		tld := dom[dot+1:]
		letters := true
		for j := 0; j < len(tld); j++ {
			letters = letters && isLetter(tld[j])
		}
		if !letters || strings.Contains(s[start:at], "..") {
			continue
		}
		ms = append(ms, Match{start, end, DetectEmail})
		off = end
	}
}

// --- numbers: cards, SSNs, IPv4 addresses, phone numbers ---

// findNumbers scans s for runs that start with a digit, '+' or '(' and
// tries, at each, a card number, an SSN, an IPv4 address and a phone
// number (in this order).
func (d *Detectors) findNumbers(s string, ms []Match) []Match {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isDigit(c) && c != '+' && c != '(' {
			continue
		}
		if i > 0 && (isAlnum(s[i-1]) || s[i-1] == '.' && c != '(' || s[i-1] == '+' || s[i-1] == '-' && isDigit(c) && i > 1 && isDigit(s[i-2])) {
			continue // inside a word or a longer number
		}
		if c == '+' && (i+1 >= len(s) || !isDigit(s[i+1]) && s[i+1] != '(') {
			continue
		}
		if c != '+' && c != '(' {
			goto digits
		}
		// '+' or '(' starts only a phone number; a failed '+' run is
		// skipped whole (no national number inside an international one).
		if d.phone {
			if e := d.phoneAt(s, i); e > 0 {
				ms = append(ms, Match{i, e, DetectPhone})
				i = e - 1
				continue
			}
		}
		if c == '+' {
			for i+1 < len(s) && (isDigit(s[i+1]) || s[i+1] == ' ' || s[i+1] == '-' || s[i+1] == '.' || s[i+1] == '(' || s[i+1] == ')') {
				i++
			}
		}
		continue
	digits:
		end := 0
		if d.card {
			if e := cardAt(s, i); e > 0 {
				ms, end = append(ms, Match{i, e, DetectCard}), e
			}
		}
		if end == 0 && d.ssn {
			if e := ssnAt(s, i); e > 0 {
				ms, end = append(ms, Match{i, e, DetectSSN}), e
			}
		}
		if end == 0 && d.ip {
			if e := ipv4At(s, i); e > 0 {
				ms, end = append(ms, Match{i, e, DetectIP}), e
			}
		}
		if end == 0 && d.phone {
			if e := d.phoneAt(s, i); e > 0 {
				ms, end = append(ms, Match{i, e, DetectPhone}), e
			}
		}
		if end > 0 {
			i = end - 1
			continue
		}
		for i+1 < len(s) && isDigit(s[i+1]) {
			i++ // skip the rest of this number
		}
	}
	return ms
}

// boundary reports whether s[e:] does not continue the token ending at e.
func boundary(s string, e int) bool {
	if e >= len(s) {
		return true
	}
	c := s[e]
	if isAlnum(c) || c == '_' {
		return false
	}
	if (c == '.' || c == '-' || c == ',') && e+1 < len(s) && isDigit(s[e+1]) {
		return false
	}
	return true
}

// cardAt matches a payment card number at i: 13 to 19 digits, in groups
// separated by single spaces or dashes, with a known issuer prefix and a
// valid Luhn check digit.
func cardAt(s string, i int) int {
	var digits [19]byte
	n, e, sep := 0, i, byte(0)
	for e < len(s) {
		c := s[e]
		if isDigit(c) {
			if n == len(digits) {
				return 0
			}
			digits[n] = c - '0'
			n++
			e++
			continue
		}
		if (c == ' ' || c == '-') && n > 0 && e+1 < len(s) && isDigit(s[e+1]) && (sep == 0 || sep == c) {
			sep = c
			e++
			continue
		}
		break
	}
	if n < 13 || !boundary(s, e) || !issuer(digits[:n]) || !luhn(digits[:n]) {
		return 0
	}
	return e
}

// issuer reports whether d starts with a card network's prefix (Visa,
// Mastercard, American Express, Discover, JCB, Diners Club, UnionPay,
// Maestro) of the right length.
func issuer(d []byte) bool {
	p2 := int(d[0])*10 + int(d[1])
	p4 := p2*100 + int(d[2])*10 + int(d[3])
	n := len(d)
	switch {
	case d[0] == 4:
		return n == 13 || n == 16 || n == 19
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720:
		return n == 16
	case p2 == 34 || p2 == 37:
		return n == 15
	case p4 == 6011, p2 == 65, p4 >= 6440 && p4 <= 6499:
		return n >= 16
	case p4 >= 3528 && p4 <= 3589:
		return n >= 16
	case p2 == 36 || p2 == 38 || p2 == 39 || p4 >= 3000 && p4 <= 3059:
		return n >= 14
	case p2 == 62:
		return n >= 16
	case p2 == 50 || p2 >= 56 && p2 <= 69:
		return n >= 12
	}
	return false
}

func luhn(d []byte) bool {
	sum := 0
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i])
		if (len(d)-1-i)%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

// ssnAt matches a US social security number at i, written AAA-GG-SSSS (or
// with spaces), with the SSA's rules: area not 000, 666 or 9xx, group not
// 00, serial not 0000.
func ssnAt(s string, i int) int {
	if i+11 > len(s) {
		return 0
	}
	t := s[i : i+11]
	sep := t[3]
	if sep != '-' && sep != ' ' || t[6] != sep {
		return 0
	}
	for _, j := range [...]int{0, 1, 2, 4, 5, 7, 8, 9, 10} {
		if !isDigit(t[j]) {
			return 0
		}
	}
	area, group, serial := t[0:3], t[4:6], t[7:11]
	if area == "000" || area == "666" || area[0] == '9' || group == "00" || serial == "0000" {
		return 0
	}
	if !boundary(s, i+11) {
		return 0
	}
	return i + 11
}

// ipv4At matches a dotted-quad IPv4 address at i.
func ipv4At(s string, i int) int {
	e := i
	for part := 0; part < 4; part++ {
		if part > 0 {
			if e >= len(s) || s[e] != '.' {
				return 0
			}
			e++
		}
		v, n := 0, 0
		for e < len(s) && isDigit(s[e]) && n < 4 {
			v = v*10 + int(s[e]-'0')
			e++
			n++
		}
		if n == 0 || n > 3 || v > 255 || n > 1 && s[e-n] == '0' {
			return 0
		}
	}
	if e < len(s) && (isAlnum(s[e]) || s[e] == '.' && e+1 < len(s) && isDigit(s[e+1])) {
		return 0
	}
	return e
}

// phoneAt matches a phone number at i: '+' and a country code, or a
// national number valid in one of the detector's regions, of 7 to 15
// digits grouped by single spaces, dashes, dots or parentheses, validated
// with libphonenumber's metadata (github.com/nyaruka/phonenumbers).
func (d *Detectors) phoneAt(s string, i int) int {
	e, digits, last := i, 0, i
	if s[e] == '+' {
		e++
	}
	open, closed, closePos, openAtLast := false, false, 0, false
	group, lastGroup := 0, 0
	for e < len(s) && e-i < 32 {
		c := s[e]
		if isDigit(c) {
			digits++
			group++
			e++
			last, lastGroup, openAtLast = e, group, open
			continue
		}
		group = 0
		switch {
		case c == '(' && !open && !closed:
			open = true
		case c == ')' && open:
			open, closed, closePos = false, true, e
		case (c == ' ' || c == '-' || c == '.') && e+1 < len(s) && (isDigit(s[e+1]) || s[e+1] == '('):
		default:
			goto done
		}
		e++
	}
done:
	e = last
	if digits < 7 || digits > 15 || lastGroup < 2 || openAtLast || s[i] == '(' && (!closed || closePos > e) || !boundary(s, e) {
		return 0
	}
	cand := s[i:e]
	if cand[0] == '+' {
		num, err := phonenumbers.Parse(cand, "")
		if err != nil || !phonenumbers.IsValidNumber(num) {
			return 0
		}
		return e
	}
	// Without a country code: a national number written with its trunk
	// prefix 0 (GB, DE, FR…) or a ten-digit North American one; other
	// digit runs are too often something else (ids, amounts, dates).
	first := i
	if s[first] == '(' {
		first++
	}
	if digits < 9 || s[first] != '0' && digits != 10 {
		return 0
	}
	for _, r := range d.regions {
		if s[first] != '0' && r != "US" && r != "CA" {
			continue // ten digits without a trunk prefix: North American only
		}
		num, err := phonenumbers.Parse(cand, r)
		if err == nil && phonenumbers.IsValidNumberForRegion(num, r) {
			return e
		}
	}
	return 0
}

// --- IBAN ---

// ibanLengths are the IBAN lengths of the countries that use one (ISO
// 13616 registry).
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
	"CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
	"FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
	"IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
	"LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
	"PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19,
	"SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}

func findIBANs(s string, ms []Match) []Match {
	for i := 0; i+15 <= len(s); i++ {
		if !isUpper(s[i]) || !isUpper(s[i+1]) || !isDigit(s[i+2]) || !isDigit(s[i+3]) || i > 0 && isAlnum(s[i-1]) {
			continue
		}
		want, ok := ibanLengths[s[i:i+2]]
		if !ok {
			continue
		}
		var buf [34]byte
		n, e := 0, i
		for e < len(s) && n < want {
			c := s[e]
			switch {
			case isDigit(c) || isUpper(c):
				buf[n] = c
				n++
				e++
				continue
			case c == ' ' && n%4 == 0 && n > 0 && e+1 < len(s) && isAlnum(s[e+1]):
				e++
				continue
			}
			break
		}
		if n != want || !boundary(s, e) || !mod97(buf[:n]) {
			continue
		}
		ms = append(ms, Match{i, e, DetectIBAN})
		i = e - 1
	}
	return ms
}

// mod97 is ISO 7064 MOD 97-10 on the IBAN rearranged (the first four
// characters moved to the end, letters as 10..35): valid when 1.
func mod97(iban []byte) bool {
	r := 0
	add := func(c byte) {
		if isDigit(c) {
			r = (r*10 + int(c-'0')) % 97
		} else {
			v := int(c-'A') + 10
			r = (r*100 + v) % 97
		}
	}
	for _, c := range iban[4:] {
		add(c)
	}
	for _, c := range iban[:4] {
		add(c)
	}
	return r == 1
}

// --- IPv6 ---

func isHex(c byte) bool { return isDigit(c) || c|0x20 >= 'a' && c|0x20 <= 'f' }

func findIPv6(s string, ms []Match) []Match {
	for off := 0; ; {
		i := strings.IndexByte(s[off:], ':')
		if i < 0 {
			return ms
		}
		c := off + i
		start, end := c, c
		for start > 0 && (isHex(s[start-1]) || s[start-1] == ':' || s[start-1] == '.') {
			start--
		}
		for end < len(s) && (isHex(s[end]) || s[end] == ':' || s[end] == '.') {
			end++
		}
		off = end
		for end > start && s[end-1] == '.' {
			end--
		}
		if end-start < 3 || strings.Count(s[start:end], ":") < 2 || start > 0 && isAlnum(s[start-1]) || end < len(s) && isAlnum(s[end]) {
			continue
		}
		if a, err := netip.ParseAddr(s[start:end]); err == nil && a.Is6() {
			ms = append(ms, Match{start, end, DetectIP})
		}
	}
}

// --- secrets ---

// secretShapes are the API-key shapes of major providers, private-key
// blocks and JWTs. An expression runs only on a text where secretCandidates
// found the literal it starts with (or, for the Stripe shapes, holds).
var secretShapes = [...]*regexp.Regexp{
	shapeSK:     regexp.MustCompile(`\bsk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}`), // OpenAI, Anthropic
	shapeAKIA:   regexp.MustCompile(`\bAKIA[0-9A-Z]{16}\b`),                                   // AWS access key id
	shapeASIA:   regexp.MustCompile(`\bASIA[0-9A-Z]{16}\b`),                                   // AWS temporary key id
	shapeGH:     regexp.MustCompile(`\bgh[pousr]_[A-Za-z0-9]{36,}\b`),                         // GitHub tokens
	shapeGHPat:  regexp.MustCompile(`\bgithub_pat_[A-Za-z0-9_]{40,}`),                         // GitHub fine-grained
	shapeGLPat:  regexp.MustCompile(`\bglpat-[A-Za-z0-9_-]{20,}`),                             // GitLab
	shapeSlack:  regexp.MustCompile(`\bxox[abposr]-[A-Za-z0-9-]{10,}`),                        // Slack
	shapeGoogle: regexp.MustCompile(`\bAIza[0-9A-Za-z_-]{35}`),                                // Google API key
	shapeLive:   regexp.MustCompile(`\b(?:sk|rk|pk)_live_[0-9A-Za-z]{16,}`),                   // Stripe
	shapeTest:   regexp.MustCompile(`\b(?:sk|rk)_test_[0-9A-Za-z]{16,}`),                      // Stripe
	shapeHF:     regexp.MustCompile(`\bhf_[A-Za-z0-9]{30,}\b`),                                // Hugging Face
	shapeKey:    regexp.MustCompile(`-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----`),
	shapeJWT:    regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}`), // JWT
}

const (
	shapeSK = iota
	shapeAKIA
	shapeASIA
	shapeGH
	shapeGHPat
	shapeGLPat
	shapeSlack
	shapeGoogle
	shapeLive
	shapeTest
	shapeHF
	shapeKey
	shapeJWT
)

// secretCandidates returns, as a bit set of shapes, those whose leading
// literal occurs in s. Every shape's literal holds a '-', a '_', an 'A' or
// a 'J' (all rare in prose), so four IndexByte passes look at every
// candidate: a text without them costs no more than those passes. The
// tests are independent: a position may start several shapes.
func secretCandidates(s string) uint16 {
	var set uint16
	each(s, '-', func(j int) {
		if j >= 2 && s[j-2:j] == "sk" {
			set |= 1 << shapeSK
		}
		if j >= 5 && s[j-5:j] == "glpat" {
			set |= 1 << shapeGLPat
		}
		if j >= 4 && s[j-4:j-1] == "xox" {
			set |= 1 << shapeSlack
		}
		if strings.HasPrefix(s[j:], "-----BEGIN") {
			set |= 1 << shapeKey
		}
	})
	each(s, '_', func(j int) {
		if j >= 3 && s[j-3:j-1] == "gh" {
			set |= 1 << shapeGH
		}
		if j >= 6 && strings.HasPrefix(s[j-6:], "github_pat_") {
			set |= 1 << shapeGHPat
		}
		if j >= 2 && s[j-2:j] == "hf" {
			set |= 1 << shapeHF
		}
		if strings.HasPrefix(s[j:], "_live_") {
			set |= 1 << shapeLive
		}
		if strings.HasPrefix(s[j:], "_test_") {
			set |= 1 << shapeTest
		}
	})
	each(s, 'A', func(j int) {
		if strings.HasPrefix(s[j:], "AKIA") {
			set |= 1 << shapeAKIA
		}
		if strings.HasPrefix(s[j:], "ASIA") {
			set |= 1 << shapeASIA
		}
		if strings.HasPrefix(s[j:], "AIza") {
			set |= 1 << shapeGoogle
		}
	})
	each(s, 'J', func(j int) {
		if j >= 2 && s[j-2:j] == "ey" {
			set |= 1 << shapeJWT
		}
	})
	return set
}

// each calls f with the index of every c in s.
func each(s string, c byte, f func(int)) {
	for off := 0; ; {
		i := strings.IndexByte(s[off:], c)
		if i < 0 {
			return
		}
		f(off + i)
		off += i + 1
	}
}

func findSecrets(s string, ms []Match) []Match {
	set := secretCandidates(s)
	for i := 0; set != 0; i++ {
		if set&(1<<i) == 0 {
			continue
		}
		set &^= 1 << i
		for _, loc := range secretShapes[i].FindAllStringIndex(s, -1) {
			ms = append(ms, Match{loc[0], loc[1], DetectSecret})
		}
	}
	return ms
}
