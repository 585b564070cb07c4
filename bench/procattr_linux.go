package main

import "syscall"

// childProcAttr makes the kernel kill a Caddy child if the benchmark dies
// without running its cleanup (SIGKILL, a panic in a worker goroutine).
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
