//go:build !windows && !plan9 && !js && !wasip1 && !aix

package revocation

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// lockDir takes the lock Badger takes on dir (flock, exclusive), or
// returns errDirLocked if another holds it.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errDirLocked
		}
		return nil, err
	}
	return func() { f.Close() }, nil // closing releases the lock
}
