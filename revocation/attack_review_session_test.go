package revocation

// Attack review of the session kind (9616bbc): a session entry must never
// match by another kind's probe nor another kind's entry by the sid, both
// session maps must hold their entries through growth, removal and expiry,
// and the counts must follow. These checks held on the code reviewed.

import (
	"fmt"
	"testing"
	"time"
)

// The same strings in every kind's field: only the session kind's entries
// match a token's sid, and session entries match nothing else.
func TestAttackSessionKindsDoNotCross(t *testing.T) {
	const iss = "https://idp"
	clock := newClock()
	// Each entry alone in a store, against tokens that carry its strings
	// in every other field.
	for _, c := range []struct {
		entry Entry
		match Token
	}{
		{Entry{SID: "x", Issuer: iss}, Token{ID: "sha256:a", Issuer: iss, SID: "x"}},
		{Entry{SID: "x"}, Token{ID: "sha256:a", SID: "x"}},
		{Entry{JTI: "x", Issuer: iss}, Token{ID: iss + "#x", Issuer: iss, JTI: "x"}},
		{Entry{JTI: "x"}, Token{ID: "#x", JTI: "x"}},
		{Entry{TokenID: iss + "#x"}, Token{ID: iss + "#x", Issuer: iss, JTI: "x"}},
		{Entry{Subject: "x", Issuer: iss}, Token{ID: "sha256:a", Issuer: iss, Subject: "x"}},
		{Entry{KeyID: "x"}, Token{ID: "sha256:a", KeyID: "x"}},
	} {
		s := openAt(t, t.TempDir(), clock)
		mustAdd(t, s, c.entry)
		if !revoked(t, s, c.match) {
			t.Errorf("%+v does not match %+v", c.entry, c.match)
		}
		// Every field "x" but the one the entry's kind matches on.
		for _, miss := range []Token{
			{ID: "sha256:b", Issuer: iss, SID: "x"},
			{ID: iss + "#x", Issuer: iss, JTI: "x"},
			{ID: "sha256:b", Issuer: iss, Subject: "x"},
			{ID: "sha256:b", Issuer: iss, KeyID: "x"},
			{ID: "x", Issuer: iss},
			{ID: "sha256:b", Issuer: "x", SID: iss},
		} {
			same := (miss.SID != "" && miss.SID == c.match.SID) || (miss.JTI != "" && miss.JTI == c.match.JTI) ||
				(miss.Subject != "" && miss.Subject == c.match.Subject) || (miss.KeyID != "" && miss.KeyID == c.match.KeyID)
			if !same && revoked(t, s, miss) {
				t.Errorf("%s entry %+v matches %+v", c.entry.Kind, c.entry, miss)
			}
		}
		s.Close()
	}
}

// Both an iss-bound and an any-issuer session entry for one sid: each
// matches on its own, removing one leaves the other, and the counts and
// the expiry sweep follow.
func TestAttackSessionBothEntries(t *testing.T) {
	clock := newClock()
	s := openAt(t, t.TempDir(), clock)
	tok := Token{ID: "iss#j", Issuer: "iss", JTI: "j", SID: "s1"}
	otherIss := Token{ID: "other#j", Issuer: "other", JTI: "j", SID: "s1"}
	bound := mustAdd(t, s, Entry{SID: "s1", Issuer: "iss"})
	anyIss := mustAdd(t, s, Entry{SID: "s1", ExpiresAt: ptr(clock.Now().Add(time.Minute))})
	if bound.ID == anyIss.ID {
		t.Fatal("iss-bound and any-issuer entries share an id")
	}
	if c := s.Counts()[KindSession]; c != 2 {
		t.Fatalf("session count %d, want 2", c)
	}
	if !revoked(t, s, tok) || !revoked(t, s, otherIss) {
		t.Fatal("entries do not match")
	}
	// The any-issuer entry expires and is swept: the bound one stays.
	clock.Advance(2 * time.Minute)
	if err := s.sweep(); err != nil {
		t.Fatal(err)
	}
	if c := s.Counts()[KindSession]; c != 1 {
		t.Errorf("session count after the sweep %d, want 1", c)
	}
	if !revoked(t, s, tok) || revoked(t, s, otherIss) {
		t.Error("after the any-issuer entry expired: wrong matches")
	}
	if _, ok, err := s.Delete(bound.ID); !ok || err != nil {
		t.Fatalf("Delete: %v %v", ok, err)
	}
	if revoked(t, s, tok) || s.Counts()[KindSession] != 0 {
		t.Errorf("after deleting both: revoked %v, count %d", revoked(t, s, tok), s.Counts()[KindSession])
	}
}

// The session filter group grows and is rebuilt on removals without
// losing a key, and touches no other group's filter.
func TestAttackSessionFilterRebuilds(t *testing.T) {
	ix := newIndex()
	now := &lazyNow{clock: time.Now}
	const n = 5000
	refs := make([]ref, n)
	for i := range n {
		r := record{kind: KindSession, field: fmt.Appendf(nil, "s%d", i)}
		if i%2 == 0 {
			r.issuer = []byte("iss")
		}
		refs[i] = addRecord(ix, r)
	}
	if ix.keys(groupSession) != n || ix.counts[kindCode(KindSession)] != n {
		t.Fatalf("keys %d, count %d", ix.keys(groupSession), ix.counts[kindCode(KindSession)])
	}
	for g := range ix.filt {
		if g != groupSession && len(ix.filt[g].words) != len(newFilter(0).words) {
			t.Errorf("group %d's filter grew with session entries", g)
		}
	}
	tok := func(i int) *Token { return &Token{ID: "sha256:x", Issuer: "iss", SID: fmt.Sprintf("s%d", i)} }
	for i := range n - 1000 {
		if !ix.remove(refs[i]) {
			t.Fatalf("remove s%d", i)
		}
	}
	for i := range n {
		if got, want := ix.revoked(tok(i), now), i >= n-1000; got != want {
			t.Fatalf("s%d: revoked %v, want %v", i, got, want)
		}
		// The odd ones were any-issuer entries: they match any issuer;
		// the even ones only "iss".
		other := &Token{ID: "sha256:x", Issuer: "other", SID: fmt.Sprintf("s%d", i)}
		if got, want := ix.revoked(other, now), i >= n-1000 && i%2 == 1; got != want {
			t.Fatalf("s%d from another issuer: revoked %v, want %v", i, got, want)
		}
	}
	if ix.counts[kindCode(KindSession)] != 1000 {
		t.Errorf("count %d, want 1000", ix.counts[kindCode(KindSession)])
	}
}
