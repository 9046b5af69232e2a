package revocation

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// memJournal records changes under j/<n>, as a replication outbox would.
type memJournal struct {
	mu        sync.Mutex
	n         int
	committed int
	fail      bool
}

func (j *memJournal) Append(w Writer, c *Change) error {
	if j.fail {
		return errors.New("journal full")
	}
	j.mu.Lock()
	j.n++
	n := j.n
	j.mu.Unlock()
	b, _ := json.Marshal(c)
	return w.Set([]byte(fmt.Sprintf("j/%08d", n)), b)
}

func (j *memJournal) Committed() {
	j.mu.Lock()
	j.committed++
	j.mu.Unlock()
}

func journalled(t *testing.T, s *Store) []Change {
	t.Helper()
	var out []Change
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("j/")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			var c Change
			if err := json.Unmarshal(v, &c); err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Every change Add and Delete make is in the journal, written in the same
// transaction; what changes nothing is not.
func TestJournal(t *testing.T) {
	clock := newClock()
	j := &memJournal{}
	s, err := Open(t.TempDir(), Options{Now: clock.Now, Logger: nopLogger, Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	soon := clock.Now().Add(time.Hour)
	e := mustAdd(t, s, Entry{JTI: "a", ExpiresAt: &soon})
	s.Add(Entry{JTI: "a", ExpiresAt: &soon}) // the same: no change
	later := soon.Add(time.Hour).Truncate(time.Second)
	s.Add(Entry{JTI: "a", ExpiresAt: &later}) // extended
	if _, ok, err := s.Delete(e.ID); !ok || err != nil {
		t.Fatal(ok, err)
	}
	s.Delete(e.ID) // already gone: no change
	got := journalled(t, s)
	if len(got) != 3 || got[0].Delete || got[0].Entry.ID != e.ID || !got[1].Entry.ExpiresAt.Equal(later) || !got[2].Delete || got[2].Entry.ID != e.ID {
		t.Fatalf("journal = %+v", got)
	}
	if j.committed != 3 {
		t.Errorf("Committed called %d times, want 3", j.committed)
	}

	// A journal that fails makes the change fail: nothing half-written.
	j.fail = true
	if _, _, err := s.Add(Entry{JTI: "b"}); err == nil {
		t.Fatal("Add succeeded though the journal failed")
	}
	if revoked(t, s, Token{JTI: "b"}) {
		t.Fatal("an entry the journal did not record matches")
	}
	if l, _, _ := s.List("", "", 10); len(l) != 0 {
		t.Fatalf("List = %+v", l)
	}
}

// Apply stores a change from another node under the same ID, without
// journaling it, and writes the caller's position in the same
// transaction, also when the change changes nothing.
func TestApply(t *testing.T) {
	clock := newClock()
	origin := openAt(t, t.TempDir(), clock)
	j := &memJournal{}
	s, err := Open(t.TempDir(), Options{Now: clock.Now, Logger: nopLogger, Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pos := 0
	at := func(n int) func(Writer) error {
		return func(w Writer) error { pos = n; return w.Set([]byte("p/pos"), []byte(fmt.Sprint(n))) }
	}
	stored := func() string {
		var v []byte
		s.db.View(func(txn *badger.Txn) error {
			it, err := txn.Get([]byte("p/pos"))
			if err == nil {
				v, _ = it.ValueCopy(nil)
			}
			return nil
		})
		return string(v)
	}
	before := clock.Now().Add(-time.Minute)
	exp := clock.Now().Add(time.Hour)
	entries := []Entry{
		mustAdd(t, origin, Entry{JTI: "j1", Issuer: "iss", Reason: "stolen", ExpiresAt: &exp}),
		mustAdd(t, origin, Entry{TokenID: "sha256:abc", ExpiresAt: &exp}),
		mustAdd(t, origin, Entry{Subject: "alice", Issuer: "iss", Before: &before}),
		mustAdd(t, origin, Entry{KeyID: "k1"}),
	}
	for i, e := range entries {
		if err := s.Apply(Change{Entry: e}, at(i+1)); err != nil {
			t.Fatalf("Apply(%+v): %v", e, err)
		}
		if err := s.Apply(Change{Entry: e}, at(i+1)); err != nil { // twice: no change
			t.Fatalf("Apply again: %v", err)
		}
		got, ok, _ := s.Get(e.ID)
		if !ok || got.Reason != e.Reason || got.Kind != e.Kind {
			t.Fatalf("after Apply, Get(%s) = %+v %v", e.ID, got, ok)
		}
	}
	if stored() != "4" || pos != 4 {
		t.Fatalf("position %q, want 4", stored())
	}
	for _, tok := range []Token{{Issuer: "iss", JTI: "j1"}, {ID: "sha256:abc"}, {Issuer: "iss", Subject: "alice", IssuedAt: before.Unix() - 10, HasIssuedAt: true}, {KeyID: "k1"}} {
		if !revoked(t, s, tok) {
			t.Errorf("applied entry does not refuse %+v", tok)
		}
	}
	if err := s.Apply(Change{Delete: true, Entry: entries[3]}, at(5)); err != nil {
		t.Fatal(err)
	}
	if revoked(t, s, Token{KeyID: "k1"}) || stored() != "5" {
		t.Fatalf("applied delete: still revoked, or position %q", stored())
	}
	if err := s.Apply(Change{Delete: true, Entry: entries[3]}, at(6)); err != nil || stored() != "6" {
		t.Fatalf("applied delete of what is gone: %v, position %q", err, stored())
	}
	// Expired by the time it arrives: nothing stored, the position moves.
	old := clock.Now().Add(time.Second)
	e := mustAdd(t, origin, Entry{JTI: "brief", ExpiresAt: &old})
	clock.Advance(time.Minute)
	if err := s.Apply(Change{Entry: e}, at(7)); err != nil || stored() != "7" {
		t.Fatalf("applying an expired entry: %v, position %q", err, stored())
	}
	if len(journalled(t, s)) != 0 || j.committed != 0 {
		t.Errorf("Apply journaled its changes: %+v", journalled(t, s))
	}
	// A change with an ID that does not fit its fields is refused.
	bad := entries[0]
	bad.JTI = "other"
	if err := s.Apply(Change{Entry: bad}, at(8)); err != nil || revoked(t, s, Token{JTI: "other"}) {
		t.Fatalf("Apply of an entry whose id does not fit: %v", err)
	}
}

// ApplyBatch ends where Apply one change at a time ends, for any sequence
// of changes (puts, extensions, deletes, repeats of one id within a
// chunk), and writes extra once, with the last chunk.
func TestApplyBatchMatchesApply(t *testing.T) {
	clock := newClock()
	j := &memJournal{}
	origin, err := Open(t.TempDir(), Options{Now: clock.Now, Logger: nopLogger, Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	defer origin.Close()
	rnd := rand.New(rand.NewPCG(1, 2))
	var ids []string
	for i := 0; i < 600; i++ {
		jti := fmt.Sprintf("j%d", rnd.IntN(40))
		switch rnd.IntN(4) {
		case 0, 1:
			var exp *time.Time
			if rnd.IntN(3) > 0 {
				x := clock.Now().Add(time.Duration(1+rnd.IntN(100)) * time.Minute)
				exp = &x
			}
			e, _, err := origin.Add(Entry{JTI: jti, Reason: fmt.Sprint("r", i), ExpiresAt: exp})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, e.ID)
		case 2:
			if len(ids) > 0 {
				origin.Delete(ids[rnd.IntN(len(ids))])
			}
		case 3:
			sub := fmt.Sprintf("s%d", rnd.IntN(10))
			origin.Add(Entry{Subject: sub, Issuer: "iss"})
		}
	}
	changes := journalled(t, origin)
	one := openAt(t, t.TempDir(), clock)
	for _, c := range changes {
		if err := one.Apply(c, nil); err != nil {
			t.Fatal(err)
		}
	}
	batch := openAt(t, t.TempDir(), clock)
	wrote := 0
	for rest := changes; len(rest) > 0; {
		n := min(len(rest), 1+rnd.IntN(450)) // some chunks over applyChunk
		last := n == len(rest)
		err := batch.ApplyBatch(rest[:n], func(w Writer) error {
			wrote++
			return w.Set([]byte("p/pos"), []byte(fmt.Sprint(last)))
		})
		if err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	list := func(s *Store) []string {
		var out []string
		for cursor := ""; ; {
			page, next, err := s.List("", cursor, 1000)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				exp := "never"
				if e.ExpiresAt != nil {
					exp = e.ExpiresAt.String()
				}
				out = append(out, e.ID+" "+e.Reason+" "+exp)
			}
			if cursor = next; cursor == "" {
				break
			}
		}
		slices.Sort(out)
		return out
	}
	want, got := list(one), list(batch)
	if len(want) == 0 || !slices.Equal(want, got) {
		t.Fatalf("after %d changes:\n Apply      %d entries %v\n ApplyBatch %d entries %v", len(changes), len(want), want, len(got), got)
	}
	if one.Counts()[KindJTI] != batch.Counts()[KindJTI] || one.Counts()[KindSubject] != batch.Counts()[KindSubject] {
		t.Errorf("index counts differ: %v vs %v", one.Counts(), batch.Counts())
	}
	for i := 0; i < 40; i++ {
		tok := Token{JTI: fmt.Sprintf("j%d", i)}
		if revoked(t, one, tok) != revoked(t, batch, tok) {
			t.Errorf("%+v: Apply and ApplyBatch disagree", tok)
		}
	}
	if wrote == 0 {
		t.Error("extra never written")
	}
}

func TestAddWithWritesExtraEveryTime(t *testing.T) {
	clock := newClock()
	s := openAt(t, t.TempDir(), clock)
	mark := func(key string) func(Writer) error {
		return func(w Writer) error { return w.Set([]byte(key), []byte("1")) }
	}
	has := func(key string) bool {
		err := s.DB().View(func(txn *badger.Txn) error {
			_, err := txn.Get([]byte(key))
			return err
		})
		if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	if _, created, err := s.AddWith(Entry{SID: "s1", Issuer: "iss"}, mark("t/one")); err != nil || !created {
		t.Fatalf("AddWith: created %v, %v", created, err)
	}
	// The same entry again changes nothing but still writes the key.
	if _, created, err := s.AddWith(Entry{SID: "s1", Issuer: "iss"}, mark("t/two")); err != nil || created {
		t.Fatalf("AddWith again: created %v, %v", created, err)
	}
	// Bad input writes nothing.
	if _, _, err := s.AddWith(Entry{SID: "s1", Before: ptr(clock.Now())}, mark("t/bad")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("AddWith invalid: %v", err)
	}
	if !has("t/one") || !has("t/two") || has("t/bad") {
		t.Fatalf("extra keys: one %v two %v bad %v", has("t/one"), has("t/two"), has("t/bad"))
	}
	if r := revoked(t, s, Token{ID: "iss#j", Issuer: "iss", JTI: "j", SID: "s1"}); !r {
		t.Fatal("session entry from AddWith does not match")
	}
}
