package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
)

// portkeyEntry is the Node entry point of Portkey's gateway inside the
// peers directory (installed by `make bench-peers`).
const portkeyEntry = "node_modules/@portkey-ai/gateway/build/start-server.js"

// startPortkey starts Portkey's open-source gateway from dir (bench/peers)
// on a free loopback port, on cpus, and returns it with the headers that
// route a request to the OpenAI-compatible upstream at upstream (…/v1).
// It returns a note instead of an error when the peer is not installed.
func startPortkey(ctx context.Context, dir string, cpus []int, upstream string) (*proc, http.Header, string, error) {
	entry := filepath.Join(dir, portkeyEntry)
	if _, err := os.Stat(entry); err != nil {
		return nil, nil, fmt.Sprintf("Portkey skipped: %s not installed (make bench-peers)", entry), nil
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, nil, "Portkey skipped: node not on PATH", nil
	}
	port, err := freePort()
	if err != nil {
		return nil, nil, "", err
	}
	cmd := exec.Command(node, "--import", "./loopback.mjs", portkeyEntry, fmt.Sprintf("--port=%d", port), "--headless")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NODE_ENV=production")
	p, err := startProc(ctx, "portkey", cmd, "", port, cpus)
	if err != nil {
		return nil, nil, "", err
	}
	h := http.Header{}
	h.Set("x-portkey-provider", "openai")
	h.Set("x-portkey-custom-host", upstream)
	h.Set("Authorization", "Bearer sk-bench-unused")
	return p, h, "", nil
}
