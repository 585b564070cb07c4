package caddymodule

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

// caddyfileSeeds are valid ai_gateway blocks (the global option and the
// handler directive) and hostile ones. testdata/fuzz/FuzzCaddyfile holds
// inputs the fuzzer found.
var caddyfileSeeds = []string{
	`ai_gateway`,
	`ai_gateway {
		provider openai {
			base_url https://api.openai.com/v1
			api_key {env.OPENAI_API_KEY}
		}
		provider azure {
			type azure
			base_url https://NAME.openai.azure.com
			api_version 2024-10-21
			header X-Team platform
			connect_timeout 5s
			first_byte_timeout 30s
			idle_timeout 30s
		}
		provider claude {
			type anthropic
			drop_unsupported_params
		}
		model gpt-4o-mini {
			target openai gpt-4o-mini weight 3
			target azure my-deployment weight 1
			fallback llama3.2 demo
			retries 2
			max_tokens 8192
			rpm 1000
			tpm 2000000
		}
		model gpt-* {
			target openai
		}
		max_body_size 4MB
		max_messages 100
		max_tokens 4096
		deadline 90s
		retry_backoff 250ms
		max_backoff 5s
		max_retry_after 10s
		max_fails 5
		cooldown 1m
		key team-a {
			secret {env.TEAM_A_KEY}
			models claude-* gemini-*
			rpm 600
			burst 60
			tpm 200000
			concurrency 20
			budget $50 month
			cache team-a
			metadata team platform
		}
		key team-b {
			sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
			budget 5 day
		}
		require_key
		keys_file /var/lib/caddy/keys.json
		reserve_output_tokens 2048
		price my-finetune 3 12 1.5
		redis redis://127.0.0.1:6379/0 {
			timeout 50ms
			on_failure fail_closed
			prefix gw:
		}
	}`,
	"ai_gateway {\n max_body_size 1MiB\n models gpt-* claude-*\n max_messages 10\n max_tokens 100\n}",
	// Hostile: deep nesting, duplicates, huge and non-finite numbers,
	// invalid UTF-8, unbalanced braces.
	"ai_gateway {\n provider a {\n type { { { { { { { {\n}\n}\n}\n}\n}\n}\n}\n}\n}\n}",
	"ai_gateway {\nprovider a {\nbase_url http://x\n}\nprovider a {\nbase_url http://y\n}\n}",
	"ai_gateway {\nmax_fails 1\nmax_fails 2\n}",
	"ai_gateway {\nmax_tokens 99999999999999999999999\nmax_body_size 18446744073709551616EB\n}",
	"ai_gateway {\nprice m NaN Inf -0\n}",
	"ai_gateway {\nkey k {\nsecret s\nbudget NaN\n}\n}",
	"ai_gateway {\nkey k {\nsecret s\nbudget 1e400 day\n}\n}",
	"ai_gateway {\nmodel m {\ntarget a weight 99999999999999999999\n}\n}",
	"ai_gateway {\nprovider \xff\xfe {\nheader \xc3\x28 \xa0\xa1\n}\n}",
	"ai_gateway {\nredis\n}",
	"ai_gateway {\n{\n}",
	"ai_gateway }",
	"ai_gateway {\nmodel {\n}\n}",
	"ai_gateway {\ncollection docs {\nstore embedded /tmp/x\nembed lexical\nchunk 400 overlap 60\n}\n}",
	"ai_gateway {\ncollection kb-1 {\nstore chroma http://127.0.0.1:8000 {\ntenant t\ndatabase d\n}\nembed m\n}\n}",
	"ai_gateway {\nrag docs {\ntop_k 3\nmax_context_tokens 100\nmin_score 0.5\ninject user\ntemplate \"C:\\n{context}\"\nfilter tenant {http.ai_gateway.key}\non_error fail\n}\n}",
}

// FuzzCaddyfile parses arbitrary input as the ai_gateway global option and
// as the ai_gateway handler directive. Parsing must never panic, and what it
// accepts must validate without panicking and survive a JSON round trip
// unchanged (the global option's JSON is what Caddy loads).
func FuzzCaddyfile(f *testing.F) {
	for _, s := range caddyfileSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		// Not caddyfile.NewTestDispenser: it exits the process on input the
		// lexer rejects (Caddy's adapter reports those as errors).
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return
		}
		v, err := parseGlobalOption(caddyfile.NewDispenser(tokens), nil)
		if err == nil {
			ha, ok := v.(httpcaddyfile.App)
			if !ok || ha.Name != "ai_gateway" {
				t.Fatalf("global option returned %#v", v)
			}
			var app App
			if err := json.Unmarshal(ha.Value, &app); err != nil {
				t.Fatalf("global option JSON %s: %v", ha.Value, err)
			}
			_ = app.Validate()
			again, err := json.Marshal(&app)
			if err != nil {
				t.Fatal(err)
			}
			if string(again) != string(ha.Value) {
				t.Fatalf("JSON round trip changed the config:\n%s\n%s", ha.Value, again)
			}
		}

		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err == nil {
			out, err := json.Marshal(&h)
			if err != nil {
				t.Fatalf("handler JSON: %v", err)
			}
			var back Handler
			if err := json.Unmarshal(out, &back); err != nil {
				t.Fatalf("handler JSON %s: %v", out, err)
			}
			if !reflect.DeepEqual(back, h) {
				t.Fatalf("handler JSON round trip changed %s", out)
			}
		}
	})
}
