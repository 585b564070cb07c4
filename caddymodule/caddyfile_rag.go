package caddymodule

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// unmarshalCollection parses a collection in the ai_gateway global option:
//
//	collection <name> {
//		store embedded [<dir>]
//		store chroma <url> {
//			tenant   <tenant>
//			database <database>
//		}
//		embed lexical|<embedding model>
//		chunk <tokens> [overlap <tokens>]
//	}
func (a *App) unmarshalCollection(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	cc := &CollectionConfig{Name: d.Val()}
	if d.NextArg() {
		return d.ArgErr()
	}
	for _, c := range a.Collections {
		if c.Name == cc.Name {
			return d.Errf("collection %q declared twice", cc.Name)
		}
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		if seen[dir] {
			return d.Errf("collection %s: %s declared twice", cc.Name, dir)
		}
		seen[dir] = true
		switch dir {
		case "store":
			if !d.NextArg() {
				return d.ArgErr()
			}
			cc.Store = d.Val()
			switch cc.Store {
			case "embedded":
				if d.NextArg() {
					cc.Path = d.Val()
				}
				if d.NextArg() {
					return d.ArgErr()
				}
			case "chroma":
				if !d.NextArg() {
					return d.Errf("store chroma needs the server's URL")
				}
				cc.URL = d.Val()
				if d.NextArg() {
					return d.ArgErr()
				}
				for n := d.Nesting(); d.NextBlock(n); {
					switch d.Val() {
					case "tenant":
						if err := parseString(d, &cc.Tenant); err != nil {
							return err
						}
					case "database":
						if err := parseString(d, &cc.Database); err != nil {
							return err
						}
					default:
						return d.Errf("unrecognized store chroma option %s", d.Val())
					}
				}
			default:
				return d.Errf("unknown store %q (embedded or chroma)", cc.Store)
			}
		case "embed":
			if err := parseString(d, &cc.Embed); err != nil {
				return err
			}
		case "chunk":
			args := d.RemainingArgs()
			if len(args) != 1 && len(args) != 3 || (len(args) == 3 && args[1] != "overlap") {
				return d.Errf("chunk <tokens> [overlap <tokens>]")
			}
			n, err := strconv.Atoi(args[0])
			if err != nil || n <= 0 {
				return d.Errf("chunk: invalid token count %q", args[0])
			}
			cc.ChunkTokens = n
			if len(args) == 3 {
				o, err := strconv.Atoi(args[2])
				if err != nil || o < 0 {
					return d.Errf("chunk: invalid overlap %q", args[2])
				}
				cc.ChunkOverlap = o
			}
		default:
			return d.Errf("unrecognized collection option %s", dir)
		}
	}
	if err := cc.validate(); err != nil {
		return d.Err(err.Error())
	}
	a.Collections = append(a.Collections, cc)
	return nil
}

// unmarshalRAG parses the rag subdirective of the ai_gateway handler:
//
//	rag <collection> {
//		top_k              <n>
//		max_context_tokens <n>
//		min_score          <number>
//		inject             system|user
//		template           <text with {context} and {query}>
//		filter             <metadata field> <placeholder expression>
//		query_turns        <n>
//		on_error           pass|fail
//	}
func (h *Handler) unmarshalRAG(d *caddyfile.Dispenser) error {
	if h.RAG != nil {
		return d.Err("rag declared twice")
	}
	if !d.NextArg() {
		return d.ArgErr()
	}
	rc := &RAGConfig{Collection: d.Val()}
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		if seen[dir] && dir != "filter" {
			return d.Errf("rag: %s declared twice", dir)
		}
		seen[dir] = true
		var err error
		switch dir {
		case "top_k":
			rc.TopK, err = parseInt(d)
		case "max_context_tokens":
			rc.MaxContextTokens, err = parseInt(d)
		case "query_turns":
			rc.QueryTurns, err = parseInt(d)
		case "min_score":
			if !d.NextArg() {
				return d.ArgErr()
			}
			f, perr := strconv.ParseFloat(d.Val(), 64)
			if perr != nil || f < 0 {
				return d.Errf("min_score: invalid number %q", d.Val())
			}
			rc.MinScore = f
			if d.NextArg() {
				return d.ArgErr()
			}
		case "inject":
			err = parseString(d, &rc.Inject)
		case "template":
			err = parseString(d, &rc.Template)
			// "\n" in the Caddyfile is a newline; and the Caddyfile turns its
			// shorthand {query} into {http.request.uri.query} before this
			// parser sees it: in a template it means the user's query.
			rc.Template = strings.NewReplacer(`\n`, "\n", "{http.request.uri.query}", "{query}").Replace(rc.Template)
		case "on_error":
			err = parseString(d, &rc.OnError)
		case "filter":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("filter <metadata field> <placeholder expression>")
			}
			if rc.Filter == nil {
				rc.Filter = map[string]string{}
			}
			if _, dup := rc.Filter[args[0]]; dup {
				return d.Errf("filter %s declared twice", args[0])
			}
			rc.Filter[args[0]] = args[1]
		default:
			return d.Errf("unrecognized rag option %s", dir)
		}
		if err != nil {
			return err
		}
	}
	if err := rc.validate(); err != nil {
		return d.Err(err.Error())
	}
	h.RAG = rc
	return nil
}
