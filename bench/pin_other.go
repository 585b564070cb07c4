//go:build !linux

package main

import (
	"errors"
	"os/exec"
	"runtime"
	"time"
)

func planPinning() pinning {
	return pinning{note: "not pinned: CPU affinity is only set on Linux"}
}

func pinSelf([]int) error { return errors.New("not supported on " + runtime.GOOS) }

func startPinned(cmd *exec.Cmd, _ []int) error { return cmd.Start() }

func cpusAllowed(int) string { return "?" }

func rssBytes(int) (int64, error) {
	return 0, errors.New("RSS is only read on Linux (/proc/PID/status)")
}

func cpuTime(int) (time.Duration, error) {
	return 0, errors.New("CPU time is only read on Linux (/proc/PID/stat)")
}
