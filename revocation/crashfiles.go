package revocation

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"
)

// removeEmptyLogs removes the empty memtable (.mem) and value log (.vlog)
// files a crash can leave in dir: one killed between creating a log file
// and sizing it, or between emptying a flushed one and removing it. Badger
// fails to open a directory holding one (dgraph-io/badger#2207), so the
// first start of Caddy after such a crash would fail (that failed open
// sizes the file, and the next start works). An empty file holds nothing:
// Badger writes a header into every log file it sizes.
//
// It looks only while holding Badger's own directory lock, so that a file
// another process's Badger is creating at that moment is never touched; a
// directory locked elsewhere is left for Badger to refuse (ErrLocked).
func removeEmptyLogs(dir string, log *zap.Logger) error {
	unlock, err := lockDir(dir)
	if errors.Is(err, errDirLocked) || errors.Is(err, fs.ErrNotExist) {
		return nil // locked elsewhere, or a new store: Badger creates dir
	}
	if err != nil {
		return err
	}
	defer unlock()
	files, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, f := range files {
		name := f.Name()
		if !f.Type().IsRegular() || !isLogName(name) {
			continue
		}
		info, err := f.Info()
		if err != nil || info.Size() != 0 {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("removing the empty Badger log file %s a crash left: %w", name, err)
		}
		log.Warn("removed an empty Badger log file a crash left; Badger cannot open the store with it", zap.String("file", name))
	}
	return nil
}

var errDirLocked = errors.New("directory locked")

// isLogName reports whether name is one Badger gives its memtable and
// value log files: a number, then .mem or .vlog.
func isLogName(name string) bool {
	id, ok := strings.CutSuffix(name, ".mem")
	if !ok {
		id, ok = strings.CutSuffix(name, ".vlog")
	}
	if !ok || id == "" {
		return false
	}
	for _, c := range id {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
