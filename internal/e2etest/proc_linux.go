package e2etest

import (
	"os/exec"
	"syscall"
)

// setProcAttr has the kernel kill Caddy if the test process dies without
// running its cleanups (a `go test -timeout` panic, a kill), so a stray
// Caddy does not keep holding the ports the next run needs.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
