package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// startTraceSink serves an OTLP/HTTP trace endpoint that reads and drops
// every export (an exporter as fast as the loopback), until ctx ends. It
// returns its base URL.
func startTraceSink(ctx context.Context) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 32<<10)
		for {
			if _, err := r.Body.Read(buf); err != nil {
				break
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK) // an empty ExportTraceServiceResponse
	})}
	go func() { _ = srv.Serve(l) }()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	return "http://" + l.Addr().String(), nil
}

// tracedCaddyfile is the full in-process pipeline with every request
// traced (sample 1) and exported to otlp.
func tracedCaddyfile(fakeAddr, otlp string) string {
	cf := gatewayCaddyfile(0, fakeAddr, true, "")
	block := fmt.Sprintf("\t\ttelemetry {\n\t\t\totlp %s http\n\t\t\tsample 1\n\t\t}\n\t}\n}\n\nhttp://", otlp)
	return strings.Replace(cf, "\t}\n}\n\nhttp://", block, 1)
}
