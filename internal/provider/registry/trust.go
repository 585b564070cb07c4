package registry

// localTypes are the provider types that run on the operator's own
// machines (their presets point at loopback): data sent to them stays
// local. Every other type is a third-party API.
var localTypes = map[string]bool{"ollama": true, "vllm": true}

// Local reports whether providers of type typ are local by default (a
// provider's trust setting overrides it).
func Local(typ string) bool { return localTypes[typ] }
