package fakellm

import (
	"bytes"
	"encoding/json"
)

// Fallback tool call used when the request declares no usable tool.
const (
	fallbackToolName = "get_weather"
	fallbackToolArgs = `{"location":"Paris"}`
)

// toolCall is the call the fake model makes when Behavior.ToolCall is set.
type toolCall struct {
	name string
	args string // JSON object
}

// firstToolCall builds a call to the first function tool of raw, which may
// use the Chat Completions shape {"type":"function","function":{"name",
// "parameters"}} or the flat Responses shape {"type":"function","name",
// "parameters"}. Arguments get one entry per parameter property, in
// declaration order: the first enum value if any, else "Paris" for strings,
// 1 for integers, 1.5 for numbers, true for booleans, [] for arrays, {} for
// objects.
//
// https://platform.openai.com/docs/api-reference/chat/create#chat-create-tools
// https://platform.openai.com/docs/api-reference/responses/create#responses-create-tools
func firstToolCall(raw json.RawMessage) toolCall {
	type function struct {
		Name       string          `json:"name"`
		Parameters json.RawMessage `json:"parameters"`
	}
	var tools []struct {
		function
		Function *function `json:"function"`
	}
	if firstByte(raw) == '[' && json.Unmarshal(raw, &tools) == nil {
		for _, t := range tools {
			f := t.function
			if t.Function != nil {
				f = *t.Function
			}
			if f.Name != "" {
				return toolCall{name: f.Name, args: buildArgs(f.Parameters)}
			}
		}
	}
	return toolCall{name: fallbackToolName, args: fallbackToolArgs}
}

// buildArgs builds an arguments object from a JSON schema's properties.
func buildArgs(schema json.RawMessage) string {
	var params struct {
		Properties json.RawMessage `json:"properties"`
	}
	if firstByte(schema) != '{' || json.Unmarshal(schema, &params) != nil || firstByte(params.Properties) != '{' {
		return "{}"
	}
	dec := json.NewDecoder(bytes.NewReader(params.Properties))
	if _, err := dec.Token(); err != nil { // {
		return "{}"
	}
	b := []byte{'{'}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "{}"
		}
		key, _ := tok.(string)
		var prop struct {
			Type json.RawMessage   `json:"type"`
			Enum []json.RawMessage `json:"enum"`
		}
		if err := dec.Decode(&prop); err != nil {
			return "{}"
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = appendJSONString(b, key)
		b = append(b, ':')
		if len(prop.Enum) > 0 {
			var buf bytes.Buffer
			if json.Compact(&buf, prop.Enum[0]) == nil {
				b = append(b, buf.Bytes()...)
				continue
			}
		}
		b = append(b, sampleValue(schemaType(prop.Type))...)
	}
	return string(append(b, '}'))
}

// schemaType returns the JSON schema type: a string, or the first non-null
// entry of a type array.
func schemaType(raw json.RawMessage) string {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		for _, t := range many {
			if t != "null" {
				return t
			}
		}
	}
	return ""
}

// sampleValue returns a JSON value of the given schema type.
func sampleValue(typ string) string {
	switch typ {
	case "integer":
		return "1"
	case "number":
		return "1.5"
	case "boolean":
		return "true"
	case "array":
		return "[]"
	case "object":
		return "{}"
	case "null":
		return "null"
	}
	return `"Paris"`
}
