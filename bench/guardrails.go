package main

import "strings"

// guardrailsCaddyfile is the full in-process pipeline with the route's
// guardrails on: truncation to the model's context window, every detector
// masking what goes to the (third-party) provider, and the answer restored.
// The bench prompt holds no personal data, so the row measures what the
// detectors and the restorer cost on every request.
func guardrailsCaddyfile(fakeAddr string) string {
	cf := gatewayCaddyfile(0, fakeAddr, true, "")
	block := "\tai_gateway {\n\t\ttruncate {\n\t\t\tstrategy drop_oldest\n\t\t}\n" +
		"\t\tprivacy {\n\t\t\tmask all third_party\n\t\t\trestore on\n\t\t}\n\t}\n}\n"
	return strings.Replace(cf, "\tai_gateway\n}\n", block, 1)
}
