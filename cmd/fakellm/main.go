// Command fakellm runs the fake OpenAI-compatible LLM upstream of package
// internal/fakellm, for demos and benchmarks.
//
//	fakellm -addr 127.0.0.1:9999 -ttft 200ms -chunk-delay 30ms -chunks 20
//
// Per-request behaviour can be changed with X-Fake-* headers (see the
// package documentation), and GET /_fakellm/stats shows request counters.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9999", "listen address")
	ttft := flag.Duration("ttft", 0, "delay before the response headers / first token")
	chunkDelay := flag.Duration("chunk-delay", 0, "delay between stream chunks")
	chunks := flag.Int("chunks", fakellm.DefaultChunks, "number of content chunks (words) per answer")
	name := flag.String("name", fakellm.DefaultName, `name shown in answers ("Hello from <name> ...")`)
	rpm := flag.Int("rpm", 0, "requests per minute quota: 429 beyond it, OpenAI rate-limit headers on every answer (0: none)")
	promptScale := flag.Float64("prompt-token-scale", 0, "multiply the prompt tokens reported in usage (imitates another tokenizer; 0: 1)")
	flag.Parse()

	opts := fakellm.Options{
		TTFT:       *ttft,
		ChunkDelay: *chunkDelay,
		Chunks:     *chunks,
		Name:       *name,

		PromptTokenScale: *promptScale,
	}
	if *rpm > 0 {
		opts.RateLimit = &fakellm.RateLimit{Requests: *rpm}
	}
	if err := run(*addr, opts); err != nil {
		log.Fatal(err)
	}
}

// run serves until SIGINT/SIGTERM, then shuts down gracefully.
func run(addr string, opts fakellm.Options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           fakellm.New(opts),
		ReadHeaderTimeout: 10 * time.Second,
		Protocols:         fakellm.Protocols(),
	}
	fmt.Printf("fakellm listening on http://%s\n", ln.Addr())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stop() // a second signal kills the process

	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		// Hanging or slow streams: cut them.
		_ = srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
