package caddymodule

import (
	"testing"
)

func TestTelemetryCaddyfileErrors(t *testing.T) {
	bad := map[string]string{
		"sample above 1":      "ai_gateway {\ntelemetry {\nsample 2\n}\n}",
		"sample not a number": "ai_gateway {\ntelemetry {\nsample half\n}\n}",
		"unknown protocol":    "ai_gateway {\ntelemetry {\notlp http://x udp\n}\n}",
		"otlp without url":    "ai_gateway {\ntelemetry {\notlp\n}\n}",
		"unknown telemetry":   "ai_gateway {\ntelemetry {\nexporter zipkin\n}\n}",
		"otlp twice":          "ai_gateway {\ntelemetry {\notlp http://a\notlp http://b\n}\n}",
		"capture with args":   "ai_gateway {\ntelemetry {\ncapture_content yes\n}\n}",
		"telemetry twice":     "ai_gateway {\ntelemetry {\n}\ntelemetry {\n}\n}",
		"unknown metrics":     "ai_gateway {\nmetrics {\nkey_labels\n}\n}",
		"metrics args":        "ai_gateway {\nmetrics on\n}",
	}
	appRejects(t, bad)
}

func TestTelemetryConfigValidate(t *testing.T) {
	for _, tc := range []TelemetryConfig{{Protocol: "udp"}, {Sample: -1}, {Sample: 1.5}} {
		if err := tc.validate(); err == nil {
			t.Errorf("%+v accepted", tc)
		}
	}
	if err := (&TelemetryConfig{Protocol: "grpc", Sample: 0.5}).validate(); err != nil {
		t.Error(err)
	}
}
