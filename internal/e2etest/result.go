package e2etest

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// Result is what a command run with [Process.TryCLI] left behind: its
// trimmed stdout and stderr and its exit code.
type Result struct {
	Stdout, Stderr string
	ExitCode       int
}

// TryCLI runs the binary with args in the same environment as this Caddy
// (so `caddy jwtguard revoke` reaches it), and does not fail the test when
// the command fails: the caller checks the exit code and the messages. The test fails
// only if the command cannot be started or runs longer than 30 s.
func (p *Process) TryCLI(t testing.TB, args ...string) Result {
	t.Helper()
	return tryCLI(t, p.cmd.Path, p.env, args)
}

func tryCLI(t testing.TB, bin string, env, args []string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := Result{Stdout: strings.TrimSpace(stdout.String()), Stderr: strings.TrimSpace(stderr.String())}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("caddy %s: no exit within %v\nstderr: %s", strings.Join(args, " "), cliTimeout, res.Stderr)
	case errors.As(err, &exit):
		res.ExitCode = exit.ExitCode()
	case err != nil:
		t.Fatalf("caddy %s: %v", strings.Join(args, " "), err)
	}
	return res
}
