package main

import (
	"strconv"
	"strings"
)

// pinning is which CPUs the gateway under test and everything else run on.
// Both are empty when nothing is pinned; note then says why.
type pinning struct {
	gateway, others []int
	note            string
}

func (p pinning) enabled() bool { return len(p.gateway) > 0 }

// cpuList formats cpus like the kernel's lists ("0", "2,3").
func cpuList(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}
