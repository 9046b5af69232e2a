// Package wait holds the one way jwtguard's background loops pause: for a
// while, until woken, or until their context ends, whichever comes first.
package wait

import (
	"context"
	"time"
)

// Sleep waits d or until ctx ends; it reports false if ctx ended first.
func Sleep(ctx context.Context, d time.Duration) bool {
	return Until(ctx, d, nil)
}

// Until is Sleep that also ends when wake receives (a nil wake never
// does); it reports false if ctx ended first.
func Until(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-wake:
		return true
	case <-t.C:
		return true
	}
}
