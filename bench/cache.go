package main

import "strings"

// cacheHit is the response cache row: the passthrough gateway with the
// cache on (memory backend). The load repeats one request, so every
// request after the first is a hit that never reaches fakellm; its ratio
// to reverse_proxy is the bar (at least 2x). The memory and paced
// rows of this target measure coalesced followers of one upstream stream.
const cacheHit = "ai_gateway cache hit (memory)"

// cacheCaddyfile is gatewayCaddyfile's passthrough gateway with a cache
// block.
func cacheCaddyfile(fakeAddr string) string {
	return strings.Replace(gatewayCaddyfile(0, fakeAddr, false, ""), "\t}\n}\n\nhttp://",
		"\t\tcache {\n\t\t\tbackend memory\n\t\t\tttl 1h\n\t\t}\n\t}\n}\n\nhttp://", 1)
}
