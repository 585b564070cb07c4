package gemini

import (
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// Gemini's Schema object (function parameters, responseSchema) is "a select
// subset of an OpenAPI 3.0 schema object" and the API refuses unknown
// fields with 400 INVALID_ARGUMENT ("Unknown name \"additionalProperties\"").
// https://ai.google.dev/api/caching#Schema
//
// schemaCleaner rewrites the JSON Schemas OpenAI clients send into that
// subset:
//
//   - kept: type, format (only enum/date-time for strings, float/double
//     for numbers, int32/int64 for integers: the Developer API refuses
//     others), title, description, nullable, enum, properties, required
//     (filtered to declared properties), items, anyOf, minItems, maxItems,
//     minLength, maxLength, minProperties, maxProperties, minimum, maximum,
//     pattern, example, default, propertyOrdering;
//   - translated: a type array ["string","null"] → type + nullable; oneOf →
//     anyOf; anyOf/enum null members → nullable (an anyOf left with one
//     member is merged into the schema); const → a one-value enum; enum
//     values → strings (Gemini's enums are strings); allOf → merged into
//     the schema; local $ref ("#/$defs/...", "#/definitions/...") →
//     inlined (a recursive reference is cut to {"type":"object"}); tuple
//     items → the first item's schema;
//   - added: propertyOrdering in declaration order for objects with several
//     properties (Gemini otherwise orders generated properties
//     alphabetically);
//   - dropped: everything else, notably additionalProperties, $schema, $id,
//     $defs, definitions, strict, patternProperties, not, if/then/else,
//     exclusiveMinimum/Maximum, examples.
//
// Schemas are bounded: at most maxSchemaNodes nodes (references included)
// and maxSchemaDepth levels, else the request is refused.
type schemaCleaner struct {
	root  gjson.Result
	nodes int
	refs  []string // references being expanded (cycle detection)
}

const (
	maxSchemaNodes = 5000
	maxSchemaDepth = 64
)

// schema is a cleaned schema node.
type schema struct {
	typ      string
	nullable bool
	format   string
	enum     [][]byte // JSON string literals
	props    []prop
	hasProps bool
	required []string
	items    *schema
	anyOf    []*schema
	extra    []member // other kept members, in input order
}

type prop struct {
	name string
	s    *schema
}

type member struct {
	key string
	val []byte
}

// clean returns the cleaned schema of v as JSON; at names the parameter
// in errors.
func (c *schemaCleaner) clean(v gjson.Result, at string) ([]byte, *provider.Error) {
	c.root, c.nodes, c.refs = v, 0, c.refs[:0]
	s, ok := c.node(v, 0)
	if !ok {
		return nil, invalidValue(at, "the schema is too large or too deeply nested.")
	}
	return s.appendJSON(make([]byte, 0, len(v.Raw))), nil
}

func (c *schemaCleaner) node(v gjson.Result, depth int) (*schema, bool) {
	c.nodes++
	if c.nodes > maxSchemaNodes || depth > maxSchemaDepth {
		return nil, false
	}
	s := &schema{}
	if !v.IsObject() {
		return s, true // boolean schema: anything
	}
	ok := true
	var merge []*schema // from $ref, allOf and single-member anyOf
	v.ForEach(func(k, x gjson.Result) bool {
		switch k.Str {
		case "$ref":
			sub, good := c.ref(x.Str, depth)
			if !good {
				ok = false
				return false
			}
			merge = append(merge, sub)
		case "type":
			s.setType(x)
		case "nullable":
			s.nullable = s.nullable || x.Type == gjson.True
		case "format":
			if x.Type == gjson.String {
				s.format = x.Str
			}
		case "title", "description", "pattern":
			if x.Type == gjson.String {
				s.set(k.Str, appendStringValue(nil, x))
			}
		case "minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties":
			if x.Type == gjson.Number && x.Num >= 0 {
				s.set(k.Str, strconv.AppendInt(nil, x.Int(), 10))
			}
		case "minimum", "maximum":
			if x.Type == gjson.Number {
				s.set(k.Str, []byte(x.Raw))
			}
		case "example", "default":
			s.set(k.Str, appendCompact(nil, x.Raw))
		case "propertyOrdering":
			if x.IsArray() {
				s.set(k.Str, appendCompact(nil, x.Raw))
			}
		case "enum":
			s.setEnum(x)
		case "const":
			if s.enum == nil {
				s.setEnum(gjson.Parse("[" + x.Raw + "]"))
			}
		case "properties":
			if !x.IsObject() {
				return true
			}
			s.hasProps = true
			x.ForEach(func(name, px gjson.Result) bool {
				sub, good := c.node(px, depth+1)
				if !good {
					ok = false
					return false
				}
				s.props = append(s.props, prop{name.Str, sub})
				return true
			})
		case "required":
			x.ForEach(func(_, r gjson.Result) bool {
				if r.Type == gjson.String && !contains(s.required, r.Str) {
					s.required = append(s.required, r.Str)
				}
				return true
			})
		case "items":
			if x.IsArray() {
				x = x.Get("0")
			}
			sub, good := c.node(x, depth+1)
			if !good {
				ok = false
				return false
			}
			s.items = sub
		case "anyOf", "oneOf":
			x.ForEach(func(_, ax gjson.Result) bool {
				sub, good := c.node(ax, depth+1)
				if !good {
					ok = false
					return false
				}
				if sub.typ == "null" {
					s.nullable = true
				} else {
					s.anyOf = append(s.anyOf, sub)
				}
				return true
			})
		case "allOf":
			x.ForEach(func(_, ax gjson.Result) bool {
				sub, good := c.node(ax, depth+1)
				if !good {
					ok = false
					return false
				}
				merge = append(merge, sub)
				return true
			})
		}
		return ok
	})
	if !ok {
		return nil, false
	}
	if len(s.anyOf) == 1 {
		merge = append(merge, s.anyOf[0])
		s.anyOf = nil
	}
	for _, m := range merge {
		s.merge(m)
	}
	return s, true
}

// ref resolves and cleans a local reference.
func (c *schemaCleaner) ref(ref string, depth int) (*schema, bool) {
	for _, r := range c.refs {
		if r == ref {
			// Gemini schemas cannot recurse: cut here.
			return &schema{typ: "object"}, true
		}
	}
	target, found := c.pointer(ref)
	if !found {
		return &schema{}, true
	}
	c.refs = append(c.refs, ref)
	s, ok := c.node(target, depth+1)
	c.refs = c.refs[:len(c.refs)-1]
	return s, ok
}

// pointer resolves a local JSON pointer ("#/$defs/Item") against the root.
func (c *schemaCleaner) pointer(ref string) (gjson.Result, bool) {
	p, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return gjson.Result{}, false
	}
	cur := c.root
	for p != "" {
		p = strings.TrimPrefix(p, "/")
		var seg string
		seg, p, _ = strings.Cut(p, "/")
		seg = strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~")
		var next gjson.Result
		found := false
		cur.ForEach(func(k, v gjson.Result) bool {
			if cur.IsObject() && k.Str == seg || cur.IsArray() && strconv.Itoa(int(k.Num)) == seg {
				next, found = v, true
				return false
			}
			return true
		})
		if !found {
			return gjson.Result{}, false
		}
		cur = next
	}
	return cur, true
}

func (s *schema) setType(x gjson.Result) {
	switch {
	case x.Type == gjson.String:
		s.typ = strings.ToLower(x.Str)
	case x.IsArray():
		var types []string
		x.ForEach(func(_, t gjson.Result) bool {
			if t.Type != gjson.String {
				return true
			}
			if tl := strings.ToLower(t.Str); tl == "null" {
				s.nullable = true
			} else {
				types = append(types, tl)
			}
			return true
		})
		switch len(types) {
		case 0:
			s.typ = "null"
		case 1:
			s.typ = types[0]
		default:
			for _, t := range types {
				s.anyOf = append(s.anyOf, &schema{typ: t})
			}
		}
	}
}

func (s *schema) setEnum(x gjson.Result) {
	if !x.IsArray() {
		return
	}
	s.enum = [][]byte{}
	x.ForEach(func(_, e gjson.Result) bool {
		switch e.Type {
		case gjson.String:
			s.enum = append(s.enum, appendStringValue(nil, e))
		case gjson.Number, gjson.True, gjson.False:
			s.enum = append(s.enum, []byte(`"`+e.Raw+`"`))
		case gjson.Null:
			s.nullable = true
		}
		return true
	})
}

func (s *schema) set(key string, val []byte) {
	for i := range s.extra {
		if s.extra[i].key == key {
			s.extra[i].val = val
			return
		}
	}
	s.extra = append(s.extra, member{key, val})
}

// merge fills what s lacks from m (allOf members, references).
func (s *schema) merge(m *schema) {
	if m.typ == "null" {
		s.nullable = true
	} else if s.typ == "" {
		s.typ = m.typ
	}
	s.nullable = s.nullable || m.nullable
	if s.format == "" {
		s.format = m.format
	}
	if s.enum == nil {
		s.enum = m.enum
	}
	s.hasProps = s.hasProps || m.hasProps
	for _, p := range m.props {
		found := false
		for _, q := range s.props {
			if q.name == p.name {
				found = true
				break
			}
		}
		if !found {
			s.props = append(s.props, p)
		}
	}
	for _, r := range m.required {
		if !contains(s.required, r) {
			s.required = append(s.required, r)
		}
	}
	if s.items == nil {
		s.items = m.items
	}
	if s.anyOf == nil {
		s.anyOf = m.anyOf
	}
	for _, e := range m.extra {
		found := false
		for _, f := range s.extra {
			if f.key == e.key {
				found = true
				break
			}
		}
		if !found {
			s.extra = append(s.extra, e)
		}
	}
}

// keepFormat reports whether the Developer API accepts format for typ.
func keepFormat(typ, format string) bool {
	switch typ {
	case "string":
		return format == "enum" || format == "date-time"
	case "number":
		return format == "float" || format == "double"
	case "integer":
		return format == "int32" || format == "int64"
	}
	return false
}

func (s *schema) appendJSON(dst []byte) []byte {
	typ, nullable := s.typ, s.nullable
	if typ == "null" {
		typ, nullable = "", true
	}
	if typ == "" {
		switch {
		case s.hasProps:
			typ = "object"
		case s.items != nil:
			typ = "array"
		case s.enum != nil:
			typ = "string"
		}
	}
	dst = append(dst, '{')
	n := len(dst)
	sep := func() {
		if len(dst) > n {
			dst = append(dst, ',')
		}
	}
	if typ != "" && len(s.anyOf) == 0 {
		dst = append(dst, `"type":`...)
		dst = appendJSONString(dst, typ)
	}
	if s.format != "" && keepFormat(typ, s.format) {
		sep()
		dst = append(dst, `"format":`...)
		dst = appendJSONString(dst, s.format)
	}
	for _, m := range s.extra {
		if m.key == "propertyOrdering" {
			continue
		}
		sep()
		dst = appendJSONString(dst, m.key)
		dst = append(dst, ':')
		dst = append(dst, m.val...)
	}
	if nullable {
		sep()
		dst = append(dst, `"nullable":true`...)
	}
	if s.enum != nil {
		sep()
		dst = append(dst, `"enum":[`...)
		for i, e := range s.enum {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, e...)
		}
		dst = append(dst, ']')
	}
	if len(s.props) > 0 {
		sep()
		dst = append(dst, `"properties":{`...)
		for i, p := range s.props {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, p.name)
			dst = append(dst, ':')
			dst = p.s.appendJSON(dst)
		}
		dst = append(dst, '}')
		ordering := false
		for _, m := range s.extra {
			if m.key == "propertyOrdering" {
				sep()
				dst = append(dst, `"propertyOrdering":`...)
				dst = append(dst, m.val...)
				ordering = true
			}
		}
		if !ordering && len(s.props) > 1 {
			sep()
			dst = append(dst, `"propertyOrdering":[`...)
			for i, p := range s.props {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = appendJSONString(dst, p.name)
			}
			dst = append(dst, ']')
		}
		req := false
		for _, r := range s.required {
			if !s.hasProp(r) {
				continue
			}
			if !req {
				sep()
				dst = append(dst, `"required":[`...)
				req = true
			} else {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, r)
		}
		if req {
			dst = append(dst, ']')
		}
	}
	if s.items != nil {
		sep()
		dst = append(dst, `"items":`...)
		dst = s.items.appendJSON(dst)
	}
	if len(s.anyOf) > 0 {
		sep()
		dst = append(dst, `"anyOf":[`...)
		for i, a := range s.anyOf {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = a.appendJSON(dst)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

func (s *schema) hasProp(name string) bool {
	for _, p := range s.props {
		if p.name == name {
			return true
		}
	}
	return false
}

// emptyObjectSchema reports whether the cleaned schema is an object
// without properties (or empty), which Gemini refuses as parameters.
func emptyObjectSchema(s []byte) bool {
	r := parse(s)
	if r.Get("properties").Exists() || r.Get("anyOf").Exists() {
		return false
	}
	t := r.Get("type").Str
	return t == "" || t == "object"
}

// appendJSONString appends s quoted.
func appendJSONString(dst []byte, s string) []byte { return openai.AppendString(dst, s) }
