//go:build !linux

package main

import "syscall"

// childProcAttr is a no-op outside Linux: children are stopped by the
// benchmark's own cleanup only.
func childProcAttr() *syscall.SysProcAttr { return nil }
