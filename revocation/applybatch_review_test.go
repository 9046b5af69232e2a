package revocation

import (
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// ApplyBatch, as Apply, refuses a change whose id does not fit its
// fields: a change from another node that names one entry's id with
// another's fields must not revoke what the fields say (under an id a
// delete of the real entry would never reach), nor stop the rest of the
// batch, nor keep the caller's position from moving.
func TestAttackApplyBatchIDMismatch(t *testing.T) {
	clock := newClock()
	origin := openAt(t, t.TempDir(), clock)
	good := mustAdd(t, origin, Entry{JTI: "j1", Issuer: "iss"})
	victim := mustAdd(t, origin, Entry{SID: "s1", Issuer: "iss"})
	forged := victim
	forged.SID, forged.Issuer = "", ""
	forged.Kind, forged.Subject = KindSubject, "alice" // the session's id, a subject's fields

	s := openAt(t, t.TempDir(), clock)
	wrote := false
	err := s.ApplyBatch([]Change{{Entry: forged}, {Entry: good}}, func(w Writer) error {
		wrote = true
		return w.Set([]byte("p/pos"), []byte("2"))
	})
	if err != nil || !wrote {
		t.Fatalf("ApplyBatch: %v, extra written %v", err, wrote)
	}
	if revoked(t, s, Token{ID: "sha256:x", Issuer: "iss", Subject: "alice"}) {
		t.Error("a change with a session's id and a subject's fields revoked the subject")
	}
	if revoked(t, s, Token{ID: "sha256:x", Issuer: "iss", SID: "s1"}) {
		t.Error("the forged change stored the session it only named")
	}
	if _, ok, _ := s.Get(victim.ID); ok {
		t.Errorf("an entry stored under %s", victim.ID)
	}
	if !revoked(t, s, Token{ID: "iss#j1", Issuer: "iss", JTI: "j1"}) {
		t.Error("the good change after the forged one was not applied")
	}
}

// With no changes, ApplyBatch still writes extra (a caller's position
// moving past changes it skipped), and refuses once the store is closed.
func TestApplyBatchOnlyExtra(t *testing.T) {
	s := openAt(t, t.TempDir(), newClock())
	if err := s.ApplyBatch(nil, func(w Writer) error { return w.Set([]byte("p/pos"), []byte("7")) }); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := s.DB().View(func(txn *badger.Txn) error {
		it, err := txn.Get([]byte("p/pos"))
		if err != nil {
			return err
		}
		v, err := it.ValueCopy(nil)
		got = string(v)
		return err
	}); err != nil || got != "7" {
		t.Fatalf("extra alone: %q %v", got, err)
	}
	if err := s.ApplyBatch(nil, nil); err != nil {
		t.Fatalf("nothing at all: %v", err)
	}
	s.Close()
	if err := s.ApplyBatch(nil, func(Writer) error { return nil }); err != ErrClosed {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
}
