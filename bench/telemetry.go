package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// startTraceSink serves an OTLP/HTTP trace endpoint that reads and drops
// every export (an exporter as fast as the loopback), until ctx ends. It
// returns its base URL. Every 2 s it reports on stderr how many spans have
// arrived: the gateway's batch processor drops spans when its exporter
// falls behind, and a traced row's req/s means little without that count.
func startTraceSink(ctx context.Context) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	var exports, spans atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		exports.Add(1)
		spans.Add(int64(countSpans(b)))
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK) // an empty ExportTraceServiceResponse
	})}
	go func() { _ = srv.Serve(l) }()
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		last := int64(0)
		for {
			select {
			case <-ctx.Done():
				_ = srv.Close()
				return
			case <-t.C:
			}
			if n := spans.Load(); n != last {
				last = n
				fmt.Fprintf(os.Stderr, "trace sink: %d spans in %d exports so far\n", n, exports.Load())
			}
		}
	}()
	return "http://" + l.Addr().String(), nil
}

// countSpans counts the spans of an ExportTraceServiceRequest by walking
// its wire format (resource_spans 1 → scope_spans 2 → spans 2) without
// decoding them.
func countSpans(b []byte) int {
	n := 0
	fields(b, 1, func(rs []byte) {
		fields(rs, 2, func(ss []byte) {
			fields(ss, 2, func([]byte) { n++ })
		})
	})
	return n
}

// fields calls fn with each length-delimited field num of the message b.
func fields(b []byte, num protowire.Number, fn func([]byte)) {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return
			}
			fn(v)
			b = b[l:]
			continue
		}
		if l = protowire.ConsumeFieldValue(n, typ, b); l < 0 {
			return
		}
		b = b[l:]
	}
}

// tracedCaddyfile is the full in-process pipeline with every request
// traced (sample 1) and exported to otlp.
func tracedCaddyfile(fakeAddr, otlp string) string {
	cf := gatewayCaddyfile(0, fakeAddr, true, "")
	block := fmt.Sprintf("\t\ttelemetry {\n\t\t\totlp %s http\n\t\t\tsample 1\n\t\t}\n\t}\n}\n\nhttp://", otlp)
	return strings.Replace(cf, "\t}\n}\n\nhttp://", block, 1)
}
