package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"codeberg.org/go-pdf/fpdf"
	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/chromatest"
)

// ragStoreCaddyfile serves one collection; .Store is its store and embed
// lines, .Keys declared keys, .RAG the handler's rag block body.
const ragStoreCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider oai {
			base_url {{.Fake}}/v1
		}
		model echo-model {
			target oai
		}
		model embedder {
			target oai
		}
		{{.Keys}}
		collection docs {
			{{.Store}}
			chunk 200 overlap 20
		}
	}
}
:{{.Port}} {
	ai_gateway {
		rag docs {
			{{.RAG}}
		}
	}
}
`

// embeddedData is the template data of an embedded store under dir.
func embeddedData(fake, dir string) map[string]any {
	return map[string]any{"Fake": fake, "Store": "store embedded " + dir + "\n\t\t\tembed lexical", "Keys": "", "RAG": "top_k 3"}
}

// ragQuery asks the gateway one question and returns the sources header.
func ragQuery(t *testing.T, gw *Gateway, q string) string {
	t.Helper()
	body := `{"model":"echo-model","messages":[{"role":"user","content":` + strconv.Quote(q) + `}]}`
	status, h, resp := post(t, gw.URL+"/v1/chat/completions", body)
	if status != 200 {
		t.Fatalf("chat: %d %s", status, resp)
	}
	return h.Get("X-AI-Gateway-RAG-Sources")
}

// adminHits returns the ids of the admin query's hits.
func adminHits(t *testing.T, gw *Gateway, q string) []string {
	t.Helper()
	status, resp := adminDo(t, gw, http.MethodPost, "/ai_gateway/collections/docs/query", `{"query":`+strconv.Quote(q)+`,"top_k":5}`)
	if status != 200 {
		t.Fatalf("query: %d %s", status, resp)
	}
	var ids []string
	for _, h := range gjson.Get(resp, "hits.#.id").Array() {
		ids = append(ids, h.Str)
	}
	return ids
}

// writeCaddyfile renders ragStoreCaddyfile for the ingest command (which
// needs no ports).
func writeCaddyfile(t *testing.T, data map[string]any) string {
	t.Helper()
	cf := strings.ReplaceAll(ragStoreCaddyfile, "{{.AdminPort}}", "0")
	cf = strings.Replace(cf, ":{{.Port}} {", ":0 {", 1)
	for k, v := range data {
		cf = strings.ReplaceAll(cf, "{{."+k+"}}", fmt.Sprint(v))
	}
	p := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(p, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func ingest(t *testing.T, config string, args ...string) string {
	t.Helper()
	cmd := exec.Command(caddyBin, append([]string{"ai-gateway", "ingest", "--config", config, "--adapter", "caddyfile", "--collection", "docs"}, args...)...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+home, "XDG_CONFIG_HOME="+home)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ingest %v: %v\n%s", args, err, out)
	}
	return string(out)
}

var summaryRe = regexp.MustCompile(`ingest docs: (\d+) files ingested \((\d+) chunks\), (\d+) unchanged, (\d+) pruned, (\d+) failed`)

// summary returns the ingested, unchanged and pruned counts of an ingest
// command's summary line.
func summary(t *testing.T, out string) (ingested, unchanged, pruned int) {
	t.Helper()
	m := summaryRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary line in:\n%s", out)
	}
	a, _ := strconv.Atoi(m[1])
	b, _ := strconv.Atoi(m[3])
	c, _ := strconv.Atoi(m[4])
	return a, b, c
}

func writePDF(t *testing.T, path, text string) {
	t.Helper()
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.AddPage()
	pdf.SetFont("Helvetica", "", 12)
	pdf.MultiCell(0, 6, text, "", "L", false)
	if err := pdf.OutputFileAndClose(path); err != nil {
		t.Fatal(err)
	}
}

func TestRAGIngestCLIFormatsReingestPrune(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake"})
	store := t.TempDir()
	config := writeCaddyfile(t, embeddedData(fake.URL, store))
	src := t.TempDir()
	files := map[string]string{
		"notes.txt":        "Quokkas are small marsupials that live on Rottnest Island.",
		"guide/install.md": "# Install\n\n## Linux\n\nThe glimmerstone package installs with apt.",
		"page.html":        "<html><head><title>Tides</title><style>p{}</style></head><body><h1>Tides</h1><p>Spring tides follow the full moon.</p></body></html>",
		"skip.bin":         "not a document",
	}
	for name, text := range files {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writePDF(t, filepath.Join(src, "report.pdf"), "The aurora borealis glows green over Tromso in winter.")

	out := ingest(t, config, src)
	if n, u, _ := summary(t, out); n != 4 || u != 0 {
		t.Fatalf("first ingest:\n%s", out)
	}
	for _, want := range []string{"ingest: guide/install.md: 1 chunks", "ingest: report.pdf: 1 chunks", "ingest: page.html: 1 chunks", "ingest: notes.txt: 1 chunks"} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q in:\n%s", want, out)
		}
	}
	if n, u, _ := summary(t, ingest(t, config, src)); n != 0 || u != 4 {
		t.Fatalf("re-ingest of unchanged files: %d ingested, %d unchanged", n, u)
	}
	// A changed file replaces its chunks; a removed one is pruned.
	os.WriteFile(filepath.Join(src, "notes.txt"), []byte("Wombats produce cube-shaped droppings."), 0o600)
	os.Remove(filepath.Join(src, "page.html"))
	out = ingest(t, config, "--prune", src)
	if n, u, p := summary(t, out); n != 1 || u != 2 || p != 1 || !strings.Contains(out, "ingest: page.html: pruned") {
		t.Fatalf("re-ingest with --prune:\n%s", out)
	}

	gw := startGateway(t, ragStoreCaddyfile, embeddedData(fake.URL, store))
	st := adminGet(t, gw, "/ai_gateway/collections/docs")
	if gjson.Get(st, "documents").Int() != 3 {
		t.Fatalf("stats %s", st)
	}
	for q, want := range map[string]string{
		"cube-shaped droppings":   "notes.txt#0",
		"aurora borealis Tromso":  "report.pdf#0",
		"glimmerstone on linux":   "guide/install.md#0",
		"quokkas Rottnest Island": "",
		"spring tides full moon":  "",
	} {
		hits := adminHits(t, gw, q)
		if want == "" && len(hits) != 0 || want != "" && (len(hits) == 0 || hits[0] != want) {
			t.Errorf("query %q: hits %v, want %q", q, hits, want)
		}
	}
}

func TestRAGEmbeddedSurvivesRestartAndReload(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake"})
	data := embeddedData(fake.URL, t.TempDir())
	gw := startGateway(t, ragStoreCaddyfile, data)
	postDoc(t, gw, "docs", "capybara.md", "", "# Capybaras\n\nCapybaras are the largest living rodents.")
	if s := ragQuery(t, gw, "largest rodents"); s != "capybara.md#0" {
		t.Fatalf("sources %q", s)
	}
	gw.Stop()

	gw = startGateway(t, ragStoreCaddyfile, data)
	if s := ragQuery(t, gw, "largest rodents"); s != "capybara.md#0" {
		t.Fatalf("after restart: sources %q", s)
	}
	// The ingest command writes the directory while the gateway runs; a
	// reload picks it up, and keeps what was there.
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "axolotl.md"), []byte("# Axolotls\n\nAxolotls regrow lost limbs."), 0o600)
	ingest(t, writeCaddyfile(t, data), src)
	gw.reload(t)
	if s := ragQuery(t, gw, "regrow lost limbs"); s != "axolotl.md#0" {
		t.Fatalf("after reload: sources %q", s)
	}
	if s := ragQuery(t, gw, "largest rodents"); s != "capybara.md#0" {
		t.Fatalf("after reload: sources %q", s)
	}
}

func TestRAGIngestKilledMidwayLeavesALoadableStore(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake"})
	data := embeddedData(fake.URL, t.TempDir())
	config := writeCaddyfile(t, data)
	src := t.TempDir()
	const n = 1500
	for i := 0; i < n; i++ {
		text := fmt.Sprintf("# Note %d\n\n%s", i, strings.Repeat(fmt.Sprintf("Paragraph about topic %d and its details. ", i), 40))
		os.WriteFile(filepath.Join(src, fmt.Sprintf("n%04d.md", i)), []byte(text), 0o600)
	}
	cmd := exec.Command(caddyBin, "ai-gateway", "ingest", "--config", config, "--adapter", "caddyfile", "--collection", "docs", src)
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+home, "XDG_CONFIG_HOME="+home)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	lines := 0
	for sc.Scan() && lines < 100 {
		lines++
	}
	_ = cmd.Process.Kill() // SIGKILL: no cleanup of any kind
	rest := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "ingest docs:") {
			t.Skip("the ingest finished before it could be killed")
		}
		rest++
	}
	_ = cmd.Wait()
	t.Logf("killed after %d files were reported (%d more lines buffered)", lines, rest)

	out := ingest(t, config, src)
	ingested, unchanged, _ := summary(t, out)
	if unchanged < lines || ingested+unchanged != n {
		t.Fatalf("after the kill: %d ingested, %d unchanged of %d (killed after %d)", ingested, unchanged, n, lines)
	}
	gw := startGateway(t, ragStoreCaddyfile, data)
	if st := adminGet(t, gw, "/ai_gateway/collections/docs"); gjson.Get(st, "documents").Int() != n {
		t.Fatalf("stats %s", st)
	}
}

func TestRAGChroma(t *testing.T) {
	chroma := chromatest.Start(t)
	fake := startFake(t, fakellm.Options{Name: "fake"})
	fake.Script("echo-model", fakellm.Behavior{Echo: true})
	data := map[string]any{"Fake": fake.URL,
		"Store": "store chroma " + chroma.URL + " {\n\t\t\t\ttenant acme\n\t\t\t\tdatabase knowledge\n\t\t\t}\n\t\t\tembed embedder",
		"Keys":  "key team-a {\n\t\t\tsecret a-secret\n\t\t\tmetadata tenant alpha\n\t\t}\n\t\tkey team-b {\n\t\t\tsecret b-secret\n\t\t\tmetadata tenant bravo\n\t\t}",
		"RAG":   "filter tenant {http.ai_gateway.key.metadata.tenant}"}
	gw := startGateway(t, ragStoreCaddyfile, data)
	docs := []struct{ id, tenant, text string }{
		{"alpha/otters.md", "alpha", "# Otters\n\nSea otters hold hands while they sleep so they do not drift apart."},
		{"alpha/owls.md", "alpha", "# Owls\n\nOwls can rotate their heads by about 270 degrees."},
		{"bravo/otters.md", "bravo", "# Otter secrets\n\nBravo's otter sanctuary code word is KELP-42, sea otters sleep holding hands."},
	}
	for _, d := range docs {
		postDoc(t, gw, "docs", d.id, d.tenant, d.text)
	}
	ask := func(key string) (string, string) {
		status, h, resp := post(t, gw.URL+"/v1/chat/completions",
			`{"model":"echo-model","messages":[{"role":"user","content":"Do sea otters sleep holding hands?"}]}`, "Authorization", "Bearer "+key)
		if status != 200 {
			t.Fatalf("chat: %d %s", status, resp)
		}
		return h.Get("X-AI-Gateway-RAG-Sources"), gjson.Get(lastBody(fake, "echo-model"), "messages.0.content").Str
	}
	srcs, sys := ask("a-secret")
	if !strings.HasPrefix(srcs, "alpha/otters.md#0") || strings.Contains(srcs, "bravo/") || strings.Contains(sys, "KELP-42") ||
		!strings.Contains(sys, "hold hands while they sleep") {
		t.Fatalf("alpha: sources %q\n%s", srcs, sys)
	}
	if srcs, _ := ask("b-secret"); srcs != "bravo/otters.md#0" {
		t.Fatalf("bravo: sources %q", srcs)
	}
	st := adminGet(t, gw, "/ai_gateway/collections/docs")
	if gjson.Get(st, "store").Str != "chroma" || gjson.Get(st, "documents").Int() != 3 || gjson.Get(st, "version").Int() != 3 {
		t.Fatalf("stats %s", st)
	}
	// The ingest command writes to the same server; a restarted gateway
	// sees everything and the version.
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "lynx.md"), []byte("# Lynx\n\nThe Iberian lynx hunts rabbits."), 0o600)
	out := ingest(t, writeCaddyfile(t, data), src)
	if n, _, _ := summary(t, out); n != 1 {
		t.Fatalf("ingest into chroma:\n%s", out)
	}
	gw.Stop()
	gw = startGateway(t, ragStoreCaddyfile, data)
	if st := adminGet(t, gw, "/ai_gateway/collections/docs"); gjson.Get(st, "documents").Int() != 4 || gjson.Get(st, "version").Int() != 4 {
		t.Fatalf("after restart: %s", st)
	}
	if hits := adminHits(t, gw, "Iberian lynx rabbits"); len(hits) == 0 || hits[0] != "lynx.md#0" {
		t.Fatalf("hits %v", hits)
	}
}

// A Chroma server that is down when the gateway starts does not keep it
// from starting: retrieval fails until the server answers, and on_error
// decides.
func TestRAGChromaDown(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake"})
	gw := startGateway(t, `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider oai {
			base_url {{.Fake}}/v1
		}
		model echo-model {
			target oai
		}
		model embedder {
			target oai
		}
		collection docs {
			store chroma http://127.0.0.1:{{.Dead}}
			embed embedder
		}
	}
}
:{{.Port}} {
	handle /fail/* {
		ai_gateway {
			rag docs {
				on_error fail
			}
		}
	}
	handle {
		ai_gateway {
			rag docs
		}
	}
}
`, map[string]any{"Fake": fake.URL, "Dead": freePort(t)})
	body := `{"model":"echo-model","messages":[{"role":"user","content":"hello"}]}`
	status, h, resp := post(t, gw.URL+"/v1/chat/completions", body)
	if status != 200 || h.Get("X-AI-Gateway-RAG") != "skipped" {
		t.Fatalf("pass: %d %v %s", status, h, resp)
	}
	status, h, resp = post(t, gw.URL+"/fail/v1/chat/completions", body)
	if status != 503 || gjson.Get(resp, "error.code").Str != "rag_unavailable" || h.Get("Retry-After") == "" {
		t.Fatalf("fail: %d %v %s", status, h, resp)
	}
	if status, _ := adminDo(t, gw, http.MethodGet, "/ai_gateway/collections/docs", ""); status != http.StatusBadGateway {
		t.Fatalf("admin stats with chroma down: %d", status)
	}
}
