package e2etest

import (
	"errors"
	"os"
	"syscall"
)

// processAlive reports whether pid may still be running; it answers false
// only when the process is known to be gone, so a live test's build
// directory is never removed.
func processAlive(pid int) bool {
	proc, err := os.FindProcess(pid)
	if err != nil {
		return false // Windows: no such process
	}
	err = proc.Signal(syscall.Signal(0))
	return !errors.Is(err, os.ErrProcessDone) && !errors.Is(err, syscall.ESRCH)
}
