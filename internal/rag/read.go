package rag

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/ledongthuc/pdf"
	"golang.org/x/net/html"
)

// MaxFileBytes bounds one ingested file.
const MaxFileBytes = 32 << 20

// Readable reports whether ReadFile reads files named like path.
func Readable(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".txt", ".md", ".markdown", ".html", ".htm", ".pdf":
		return true
	}
	return false
}

// ReadFile reads a .txt, .md, .html or .pdf file into a document named id.
func ReadFile(path, id string) (Document, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Document{}, err
	}
	if fi.Size() > MaxFileBytes {
		return Document{}, fmt.Errorf("%s: larger than %d MiB", path, MaxFileBytes>>20)
	}
	if strings.EqualFold(filepath.Ext(path), ".pdf") {
		return readPDF(path, id)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Document{}, err
	}
	return ReadBytes(b, filepath.Ext(path), id)
}

// ReadBytes reads b as the format its extension ext names (".md",
// ".html"; anything else is plain text).
func ReadBytes(b []byte, ext, id string) (Document, error) {
	d := Document{ID: id}
	switch strings.ToLower(ext) {
	case ".md", ".markdown":
		d.Title, d.Sections = ReadMarkdown(string(b))
	case ".html", ".htm":
		var err error
		if d.Title, d.Sections, err = ReadHTML(bytes.NewReader(b)); err != nil {
			return d, err
		}
	default:
		d.Sections = []Section{{Text: string(b)}}
	}
	if d.Title == "" {
		d.Title = strings.TrimSuffix(filepath.Base(id), filepath.Ext(id))
	}
	return d, nil
}

var (
	mdLink    = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	mdHeading = regexp.MustCompile(`^(#{1,6})\s+(.*?)\s*#*\s*$`)
)

// ReadMarkdown returns a Markdown document's title (front matter "title:"
// or the first level-1 heading) and its sections by heading path. Links
// keep their text; code blocks are kept as text.
func ReadMarkdown(src string) (string, []Section) {
	src = strings.ReplaceAll(src, "\r\n", "\n")
	title := ""
	if rest, ok := strings.CutPrefix(src, "---\n"); ok {
		if end := strings.Index(rest, "\n---"); end >= 0 {
			for _, line := range strings.Split(rest[:end], "\n") {
				if v, ok := strings.CutPrefix(line, "title:"); ok {
					title = strings.Trim(strings.TrimSpace(v), `"'`)
				}
			}
			src = rest[end+4:]
			if i := strings.IndexByte(src, '\n'); i >= 0 {
				src = src[i+1:]
			}
		}
	}
	var sections []Section
	var path []string
	var cur strings.Builder
	flush := func() {
		if t := strings.TrimSpace(cur.String()); t != "" {
			sections = append(sections, Section{Headings: append([]string(nil), path...), Text: t})
		}
		cur.Reset()
	}
	fence := false
	for _, line := range strings.Split(src, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fence = !fence
			cur.WriteString(line)
			cur.WriteByte('\n')
			continue
		}
		if !fence {
			if m := mdHeading.FindStringSubmatch(line); m != nil {
				flush()
				level := len(m[1])
				h := mdLink.ReplaceAllString(m[2], "$1")
				if level == 1 && title == "" {
					title = h
				}
				if level-1 < len(path) {
					path = path[:level-1]
				}
				for len(path) < level-1 {
					path = append(path, "")
				}
				path = append(path, h)
				continue
			}
			line = mdLink.ReplaceAllString(line, "$1")
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	flush()
	return title, sections
}

// ReadHTML extracts an HTML page's title (<title>, else the first <h1>)
// and its text by heading path; script, style, nav, header and footer
// elements are skipped.
func ReadHTML(r io.Reader) (string, []Section, error) {
	root, err := html.Parse(r)
	if err != nil {
		return "", nil, err
	}
	var (
		title, h1 string
		sections  []Section
		path      []string
		cur       strings.Builder
	)
	flush := func() {
		if t := strings.TrimSpace(cur.String()); t != "" {
			sections = append(sections, Section{Headings: append([]string(nil), path...), Text: t})
		}
		cur.Reset()
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script", "style", "nav", "header", "footer", "noscript", "template":
				return
			case "title":
				title = strings.TrimSpace(textOf(n))
				return
			case "h1", "h2", "h3", "h4", "h5", "h6":
				flush()
				level := int(n.Data[1] - '0')
				h := strings.Join(strings.Fields(textOf(n)), " ")
				if level == 1 && h1 == "" {
					h1 = h
				}
				if level-1 < len(path) {
					path = path[:level-1]
				}
				for len(path) < level-1 {
					path = append(path, "")
				}
				path = append(path, h)
				return
			case "p", "div", "li", "pre", "blockquote", "tr", "section", "article", "br", "table", "ul", "ol", "dd", "dt":
				defer cur.WriteString("\n\n")
			}
		}
		if n.Type == html.TextNode {
			t := n.Data
			if n.Parent == nil || n.Parent.Data != "pre" {
				t = strings.Join(strings.Fields(t), " ")
				if t != "" {
					t += " "
				}
			}
			cur.WriteString(t)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(root)
	flush()
	if title == "" {
		title = h1
	}
	return title, sections, nil
}

func textOf(n *html.Node) string {
	var b strings.Builder
	var f func(*html.Node)
	f = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			f(c)
		}
	}
	f(n)
	return b.String()
}

// readPDF extracts a PDF's text page by page (github.com/ledongthuc/pdf,
// pure Go): each page is a section headed "Page N".
func readPDF(path, id string) (d Document, err error) {
	defer func() {
		if r := recover(); r != nil { // the parser panics on some malformed files
			err = fmt.Errorf("%s: unreadable PDF: %v", path, r)
		}
	}()
	f, r, err := pdf.Open(path)
	if err != nil {
		return Document{}, fmt.Errorf("%s: %v", path, err)
	}
	defer f.Close()
	d = Document{ID: id}
	for i := 1; i <= r.NumPage(); i++ {
		p := r.Page(i)
		if p.V.IsNull() {
			continue
		}
		rows, err := p.GetTextByRow()
		if err != nil {
			return Document{}, fmt.Errorf("%s: page %d: %v", path, i, err)
		}
		var b strings.Builder
		for _, row := range rows {
			for j, w := range row.Content {
				if j > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(w.S)
			}
			b.WriteByte('\n')
		}
		if t := strings.TrimSpace(b.String()); t != "" {
			d.Sections = append(d.Sections, Section{Headings: []string{fmt.Sprintf("Page %d", i)}, Text: t})
		}
	}
	d.Title = strings.TrimSuffix(filepath.Base(id), filepath.Ext(id))
	return d, nil
}
