//go:build !linux

package e2etest

import "os/exec"

// setProcAttr does nothing here: only Linux can tie the child's life to
// the test process's.
func setProcAttr(*exec.Cmd) {}
