package revocation

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// logFids lists the file ids of dir's files ending in ext.
func logFids(t *testing.T, dir, ext string) []int {
	t.Helper()
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var fids []int
	for _, n := range names {
		if id, ok := strings.CutSuffix(n.Name(), ext); ok {
			fid, err := strconv.Atoi(id)
			if err != nil {
				t.Fatal(err)
			}
			fids = append(fids, fid)
		}
	}
	slices.Sort(fids)
	return fids
}

func emptyFile(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestOpensWithEmptyLogFiles: a crash can leave a Badger log file empty:
// one killed between creating a memtable or value log file and sizing
// it, or between emptying a flushed one and removing it. Badger then fails
// to open the directory ("while opening memtables ... Create a new file",
// dgraph-io/badger#2207), and so the first start of Caddy after the crash.
// An empty file holds no entry; Open removes it, under Badger's directory
// lock, and opens.
func TestOpensWithEmptyLogFiles(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	s := openAt(t, dir, clock)
	e := mustAdd(t, s, Entry{JTI: "kept", Issuer: "iss"})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mems, vlogs := logFids(t, dir, ".mem"), logFids(t, dir, ".vlog")
	if len(vlogs) == 0 {
		t.Fatal("no value log file")
	}
	nextMem := 1 // a clean Close flushes and removes every memtable file
	if len(mems) > 0 {
		nextMem = mems[len(mems)-1] + 1
	}
	// the next ones, as if created and not sized, and one below, as if a
	// flushed memtable had been emptied and not removed
	made := []string{
		fmt.Sprintf("%05d.mem", nextMem),
		fmt.Sprintf("%06d.vlog", vlogs[len(vlogs)-1]+1),
		fmt.Sprintf("%05d.mem", 0),
	}
	for _, name := range made {
		emptyFile(t, filepath.Join(dir, name))
	}

	// While another store holds the directory, nothing is removed: there
	// an empty file may be one being created.
	holder, err := Open(dir, Options{Logger: nopLogger, Now: clock.Now})
	if err != nil {
		t.Fatalf("opening with empty log files: %v", err)
	}
	// gone, or made anew by Badger (the next fids are the same)
	for _, name := range made {
		if info, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) && (err != nil || info.Size() == 0) {
			t.Errorf("%s still there empty: %v", name, err)
		}
	}
	emptyFile(t, filepath.Join(dir, "99998.mem"))
	if _, err := Open(dir, Options{Logger: nopLogger}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "99998.mem")); err != nil {
		t.Fatalf("a second Open touched the holder's directory: %v", err)
	}
	if !revoked(t, holder, Token{Issuer: "iss", JTI: "kept"}) {
		t.Error("entry lost")
	}
	if err := holder.Close(); err != nil {
		t.Fatal(err)
	}

	s = openAt(t, dir, clock)
	if got, ok, err := s.Get(e.ID); err != nil || !ok || !sameEntry(got, e) {
		t.Fatalf("after reopening: %+v %v %v", got, ok, err)
	}
	mustAdd(t, s, Entry{JTI: "after", Issuer: "iss"})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, dir, clock)
	if !revoked(t, s, Token{Issuer: "iss", JTI: "kept"}) || !revoked(t, s, Token{Issuer: "iss", JTI: "after"}) {
		t.Error("entries lost after the second reopening")
	}
}

// Only the names Badger gives its log files are removed when empty.
func TestIsLogName(t *testing.T) {
	for name, want := range map[string]bool{
		"00001.mem": true, "000002.vlog": true, "0.mem": true,
		"notes.mem": false, ".mem": false, "00001.mem.bak": false, "00001.sst": false,
		"MANIFEST": false, "1x.vlog": false, "-1.mem": false, "KEYREGISTRY": false,
	} {
		if got := isLogName(name); got != want {
			t.Errorf("isLogName(%q) = %v", name, got)
		}
	}
}
