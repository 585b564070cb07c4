package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

func TestCLI(t *testing.T) {
	out, err := exec.Command(caddyBin, "ai-gateway", "hash-key", "team-b-secret").Output()
	if err != nil || strings.TrimSpace(string(out)) != hashHex("team-b-secret") {
		t.Fatalf("hash-key: %v %q", err, out)
	}
	cmd := exec.Command(caddyBin, "ai-gateway", "hash-key")
	cmd.Stdin = strings.NewReader("team-b-secret\n")
	if out, err = cmd.Output(); err != nil || strings.TrimSpace(string(out)) != hashHex("team-b-secret") {
		t.Fatalf("hash-key from stdin: %v %q", err, out)
	}
	out, err = exec.Command(caddyBin, "ai-gateway", "new-key").Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err != nil || len(lines) != 2 {
		t.Fatalf("new-key: %v %q", err, out)
	}
	secret := strings.TrimPrefix(lines[0], "secret: ")
	if !strings.HasPrefix(secret, "sk-gw-") || lines[1] != "sha256: "+hashHex(secret) {
		t.Fatalf("new-key output %q", out)
	}
	out, _ = exec.Command(caddyBin, "list-modules").Output()
	for _, m := range []string{"ai_gateway", "http.handlers.ai_gateway", "admin.api.ai_gateway"} {
		if !strings.Contains(string(out), m+"\n") {
			t.Errorf("list-modules lacks %s", m)
		}
	}
}
