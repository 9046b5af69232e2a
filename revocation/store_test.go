package revocation

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// fakeClock is the injectable clock: tests move it, they never sleep. It
// starts at the real time so Badger's own TTL clock is never ahead of it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	// A fixed sub-second offset, so truncation to the second is exercised.
	return &fakeClock{t: time.Now().Truncate(time.Second).Add(250 * time.Millisecond)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openAt(t testing.TB, dir string, clock *fakeClock) *Store {
	t.Helper()
	opts := Options{Now: clock.Now, Logger: nopLogger}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func mustAdd(t testing.TB, s *Store, e Entry) Entry {
	t.Helper()
	got, created, err := s.Add(e)
	if err != nil {
		t.Fatalf("Add(%+v): %v", e, err)
	}
	if !created {
		t.Fatalf("Add(%+v): created = false for a new entry", e)
	}
	return got
}

func revoked(t testing.TB, s *Store, tok Token) bool {
	t.Helper()
	r, err := s.Revoked(&tok)
	if err != nil {
		t.Fatalf("Revoked: %v", err)
	}
	return r
}

func ptr[T any](v T) *T { return &v }

func TestMatching(t *testing.T) {
	const iss, other = "https://issuer.example", "https://other.example"
	clock := newClock()
	now := clock.Now()
	iat := now.Unix() - 60
	tok := func(issuer, jti, sub, kid string) Token {
		id := "sha256:xyz"
		if jti != "" {
			id = issuer + "#" + jti
		}
		return Token{ID: id, Issuer: issuer, JTI: jti, Subject: sub, KeyID: kid, IssuedAt: iat, HasIssuedAt: true}
	}
	cases := []struct {
		name  string
		entry Entry
		match []Token
		miss  []Token
	}{
		{
			name:  "jti with iss",
			entry: Entry{JTI: "j1", Issuer: iss},
			match: []Token{tok(iss, "j1", "alice", "k")},
			miss:  []Token{tok(other, "j1", "alice", "k"), tok("", "j1", "alice", "k"), tok(iss, "j2", "alice", "k"), tok(iss, "", "alice", "k"), tok("j1", iss, "alice", "k")},
		},
		{
			name:  "jti any issuer",
			entry: Entry{JTI: "j1"},
			match: []Token{tok(iss, "j1", "alice", "k"), tok(other, "j1", "bob", ""), tok("", "j1", "", "")},
			miss:  []Token{tok(iss, "j2", "alice", "k"), tok(iss, "J1", "alice", "k"), tok(iss, "", "j1", "j1")},
		},
		{
			name:  "token id",
			entry: Entry{TokenID: iss + "#j1"},
			match: []Token{tok(iss, "j1", "alice", "k")},
			miss:  []Token{tok(other, "j1", "alice", "k"), tok(iss, "j2", "alice", "k"), {ID: "sha256:abc", Issuer: iss, JTI: "j1x"}},
		},
		{
			name:  "token id with '#' in iss or jti",
			entry: Entry{TokenID: "a#b#c"},
			match: []Token{{ID: "a#b#c", Issuer: "a", JTI: "b#c"}, {ID: "a#b#c", Issuer: "a#b", JTI: "c"}, {ID: "a#b#c"}},
			miss:  []Token{{ID: "a#b#d", Issuer: "a#b", JTI: "d"}, {ID: "a#bc", Issuer: "a", JTI: "bc"}, {ID: "b#c", Issuer: "b", JTI: "c"}, {ID: "a#b", Issuer: "a", JTI: "b"}},
		},
		{
			name:  "token id of a token without iss",
			entry: Entry{TokenID: "#j1"},
			match: []Token{{ID: "#j1", JTI: "j1"}},
			miss:  []Token{{ID: "iss#j1", Issuer: "iss", JTI: "j1"}, {ID: "j1", JTI: "j1"}},
		},
		{
			name:  "token id without jti",
			entry: Entry{TokenID: "sha256:abc"},
			match: []Token{{ID: "sha256:abc", Subject: "alice"}},
			miss:  []Token{{ID: "sha256:abd", Subject: "alice"}, {ID: "", JTI: "sha256:abc"}},
		},
		{
			name:  "subject with iss",
			entry: Entry{Subject: "alice", Issuer: iss},
			match: []Token{tok(iss, "j1", "alice", "k"), tok(iss, "", "alice", "")},
			miss:  []Token{tok(other, "j1", "alice", "k"), tok("", "j1", "alice", "k"), tok(iss, "j1", "bob", "k"), tok(iss, "alice", "", "alice"), tok("alice", "j1", iss, "k")},
		},
		{
			name:  "subject any issuer",
			entry: Entry{Subject: "alice"},
			match: []Token{tok(iss, "j1", "alice", "k"), tok(other, "", "alice", ""), tok("", "", "alice", "")},
			miss:  []Token{tok(iss, "j1", "alicE", "k"), tok(iss, "alice", "bob", "alice")},
		},
		{
			name:  "key",
			entry: Entry{KeyID: "k1"},
			match: []Token{tok(iss, "j1", "alice", "k1"), tok("", "", "", "k1")},
			miss:  []Token{tok(iss, "j1", "alice", "k2"), tok(iss, "j1", "alice", ""), tok(iss, "k1", "k1", "")},
		},
		{
			name:  "session with iss",
			entry: Entry{SID: "s1", Issuer: iss},
			match: []Token{{ID: iss + "#j1", Issuer: iss, JTI: "j1", SID: "s1"}, {ID: "sha256:x", Issuer: iss, SID: "s1", Subject: "alice"}},
			miss: []Token{
				{ID: other + "#j1", Issuer: other, JTI: "j1", SID: "s1"}, {ID: "sha256:x", SID: "s1"},
				{ID: iss + "#j1", Issuer: iss, JTI: "j1", SID: "s2"}, {ID: iss + "#s1", Issuer: iss, JTI: "s1"},
				{ID: "sha256:x", Issuer: iss, Subject: "s1", KeyID: "s1"}, {ID: "sha256:x", Issuer: "s1", SID: iss},
			},
		},
		{
			name:  "session any issuer",
			entry: Entry{SID: "s1"},
			match: []Token{{ID: iss + "#j1", Issuer: iss, JTI: "j1", SID: "s1"}, {ID: "sha256:x", Issuer: other, SID: "s1"}, {ID: "sha256:x", SID: "s1"}},
			miss:  []Token{{ID: iss + "#j1", Issuer: iss, JTI: "j1", SID: "S1"}, {ID: "s1", JTI: "s1", Subject: "s1", KeyID: "s1"}},
		},
	}
	dir := t.TempDir()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openAt(t, fmt.Sprintf("%s/%d", dir, i), clock)
			for _, tok := range append(tc.match, tc.miss...) {
				if revoked(t, s, tok) {
					t.Fatalf("empty list revokes %+v", tok)
				}
			}
			e := mustAdd(t, s, tc.entry)
			for _, tok := range tc.match {
				if !revoked(t, s, tok) {
					t.Errorf("%+v does not revoke %+v", e, tok)
				}
			}
			for _, tok := range tc.miss {
				if revoked(t, s, tok) {
					t.Errorf("%+v revokes %+v", e, tok)
				}
			}
			if _, ok, err := s.Delete(e.ID); !ok || err != nil {
				t.Fatalf("Delete: %v %v", ok, err)
			}
			for _, tok := range tc.match {
				if revoked(t, s, tok) {
					t.Errorf("deleted %+v still revokes %+v", e, tok)
				}
			}
		})
	}
}

func TestSubjectBefore(t *testing.T) {
	clock := newClock() // T + 0.25 s
	T := clock.Now().Truncate(time.Second)
	s := openAt(t, t.TempDir(), clock)
	tok := func(iat int64) Token {
		return Token{Issuer: "iss", Subject: "alice", IssuedAt: iat, HasIssuedAt: true}
	}
	frac := T.Add(900 * time.Millisecond)
	e := mustAdd(t, s, Entry{Subject: "alice", Before: &frac, Reason: "password reset"})
	if !e.Before.Equal(T) {
		t.Fatalf("before %v stored as %v, want %v", frac, e.Before, T)
	}
	for _, c := range []struct {
		tok  Token
		want bool
	}{
		{tok(T.Unix() - 1), true},
		{tok(T.Unix()), false}, // issued in the revocation's second: valid (SPEC)
		{tok(T.Unix() + 1), false},
		{Token{Issuer: "iss", Subject: "alice"}, true}, // no iat
		{Token{Issuer: "iss", Subject: "bob", IssuedAt: T.Unix() - 1, HasIssuedAt: true}, false},
	} {
		if got := revoked(t, s, c.tok); got != c.want {
			t.Errorf("%+v: revoked = %v, want %v", c.tok, got, c.want)
		}
	}

	// Default before: now, truncated.
	d := mustAdd(t, s, Entry{Subject: "carol"})
	if !d.Before.Equal(T) {
		t.Errorf("default before = %v, want %v", d.Before, T)
	}
}

func TestSubjectSeveralBefores(t *testing.T) {
	clock := newClock()
	T := clock.Now().Truncate(time.Second)
	s := openAt(t, t.TempDir(), clock)
	tok := func(iat time.Time) Token {
		return Token{Issuer: "iss", Subject: "alice", IssuedAt: iat.Unix(), HasIssuedAt: true}
	}
	t1, t2, t3 := T.Add(-time.Hour), T.Add(-time.Minute), T.Add(-30*time.Minute)
	e1 := mustAdd(t, s, Entry{Subject: "alice", Issuer: "iss", Before: &t1})
	e2 := mustAdd(t, s, Entry{Subject: "alice", Issuer: "iss", Before: &t2})
	e3 := mustAdd(t, s, Entry{Subject: "alice", Issuer: "iss", Before: &t3})
	if e1.ID == e2.ID || e2.ID == e3.ID {
		t.Fatal("different befores must make different entries")
	}
	check := func(at time.Time, want bool) {
		t.Helper()
		if got := revoked(t, s, tok(at)); got != want {
			t.Errorf("iat %v: revoked = %v, want %v", at.Sub(T), got, want)
		}
	}
	check(t2.Add(-time.Second), true) // the latest before wins
	check(t2, false)
	if _, ok, _ := s.Delete(e2.ID); !ok {
		t.Fatal("delete e2")
	}
	check(t2.Add(-time.Second), false)
	check(t3.Add(-time.Second), true) // the others stay effective
	if _, ok, _ := s.Delete(e3.ID); !ok {
		t.Fatal("delete e3")
	}
	check(t3.Add(-time.Second), false)
	check(t1.Add(-time.Second), true)
	if _, ok, _ := s.Delete(e1.ID); !ok {
		t.Fatal("delete e1")
	}
	check(t1.Add(-time.Second), false)
	if n := s.Counts()[KindSubject]; n != 0 {
		t.Errorf("Counts[subject] = %d after deleting all", n)
	}
}

func TestExpiry(t *testing.T) {
	clock := newClock()
	dir := t.TempDir()
	s := openAt(t, dir, clock)
	exp := clock.Now().Add(time.Hour)
	tokJ := Token{ID: "iss#j1", Issuer: "iss", JTI: "j1"}
	tokS := Token{Subject: "alice"}
	tokK := Token{KeyID: "k1"}
	j := mustAdd(t, s, Entry{JTI: "j1", ExpiresAt: &exp})
	sub := mustAdd(t, s, Entry{Subject: "alice", ExpiresAt: &exp})
	key := mustAdd(t, s, Entry{KeyID: "k1"}) // never expires
	if !j.ExpiresAt.Equal(exp.Truncate(time.Second).Add(time.Second)) {
		t.Errorf("expires_at %v stored as %v: want it rounded up to the second", exp, j.ExpiresAt)
	}
	for _, tok := range []Token{tokJ, tokS, tokK} {
		if !revoked(t, s, tok) {
			t.Fatalf("%+v not revoked before expiry", tok)
		}
	}

	clock.Advance(time.Hour + 2*time.Second)
	if revoked(t, s, tokJ) || revoked(t, s, tokS) {
		t.Error("expired entries still match")
	}
	if !revoked(t, s, tokK) {
		t.Error("the entry without expiry stopped matching")
	}
	if _, ok, _ := s.Get(j.ID); ok {
		t.Error("Get returns an expired entry")
	}
	if _, ok, _ := s.Delete(sub.ID); ok {
		t.Error("Delete finds an expired entry")
	}
	if l, _, _ := s.List("", "", 10); len(l) != 1 || l[0].ID != key.ID {
		t.Errorf("List after expiry = %+v, want only the key entry", l)
	}

	// The sweep takes them out of the index.
	if err := s.sweep(); err != nil {
		t.Fatal(err)
	}
	if c := s.Counts(); c[KindJTI] != 0 || c[KindSubject] != 0 || c[KindKey] != 1 {
		t.Errorf("Counts after sweep = %v", c)
	}

	// Expired while closed: gone after reopening, bookkeeping included.
	exp2 := clock.Now().Add(time.Minute)
	mustAdd(t, s, Entry{JTI: "j2", ExpiresAt: &exp2})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)
	s = openAt(t, dir, clock)
	if revoked(t, s, Token{JTI: "j2"}) {
		t.Error("entry that expired while closed matches after reopen")
	}
	if c := s.Counts(); c[KindJTI] != 0 || c[KindKey] != 1 {
		t.Errorf("Counts after reopen = %v", c)
	}
	if l, _, _ := s.List("", "", 10); len(l) != 1 {
		t.Errorf("List after reopen = %+v", l)
	}
	if n := countPrefix(t, s, expiryPrefix); n != 0 {
		t.Errorf("%d expiry keys left after reopen", n)
	}
}

// An entry stored again after it expired, while Badger still shows the old
// copy: the sweep of the old copy must not take the new one out.
func TestReAddAfterExpiry(t *testing.T) {
	clock := newClock()
	s := openAt(t, t.TempDir(), clock)
	exp := clock.Now().Add(time.Minute)
	first := mustAdd(t, s, Entry{JTI: "j1", ExpiresAt: &exp})
	clock.Advance(2 * time.Minute)
	exp2 := clock.Now().Add(time.Hour)
	second, created, err := s.Add(Entry{JTI: "j1", ExpiresAt: &exp2})
	if err != nil || !created {
		t.Fatalf("re-add: created=%v err=%v", created, err)
	}
	if second.ID != first.ID || !second.CreatedAt.After(first.CreatedAt) {
		t.Fatalf("re-add: %+v after %+v", second, first)
	}
	if err := s.sweep(); err != nil {
		t.Fatal(err)
	}
	if !revoked(t, s, Token{JTI: "j1"}) {
		t.Fatal("sweeping the expired copy removed the new one")
	}
	if c := s.Counts()[KindJTI]; c != 1 {
		t.Errorf("Counts[jti] = %d, want 1", c)
	}
	if l, _, _ := s.List("", "", 10); len(l) != 1 || !l[0].ExpiresAt.Equal(*second.ExpiresAt) {
		t.Errorf("List = %+v", l)
	}

	// Again, but deleted before the sweep drops the expired copy: the
	// deletion must take effect at once.
	clock.Advance(2 * time.Hour)
	exp3 := clock.Now().Add(time.Hour)
	third := mustAdd(t, s, Entry{JTI: "j1", ExpiresAt: &exp3})
	if _, ok, err := s.Delete(third.ID); !ok || err != nil {
		t.Fatalf("Delete: %v %v", ok, err)
	}
	if revoked(t, s, Token{JTI: "j1"}) {
		t.Error("deleted entry matches until the sweep")
	}
	if err := s.sweep(); err != nil {
		t.Fatal(err)
	}
	if revoked(t, s, Token{JTI: "j1"}) || s.Counts()[KindJTI] != 0 {
		t.Errorf("after the sweep: counts %v", s.Counts())
	}
}

// An entry that expires while the index loads may be skipped by Badger
// (which hides it by its own clock); its sweep bookkeeping must not later
// take a new copy of the same entry out of the index.
func TestExpiredDuringLoad(t *testing.T) {
	dir := t.TempDir()
	// Our clock an hour behind Badger's: Badger hides what we still call live.
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	s := openAt(t, dir, &fakeClock{t: t0})
	exp := t0.Add(30 * time.Minute)
	first := mustAdd(t, s, Entry{JTI: "w", ExpiresAt: &exp})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopen; the load starts at t0 and ends two hours later.
	var calls atomic.Int32
	clock := func() time.Time {
		if calls.Add(1) == 1 {
			return t0
		}
		return t0.Add(2 * time.Hour)
	}
	s, err := Open(dir, Options{Now: clock, Logger: nopLogger})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	exp2 := t0.Add(3 * time.Hour)
	second, created, err := s.Add(Entry{JTI: "w", ExpiresAt: &exp2})
	if err != nil || !created || second.ID != first.ID {
		t.Fatalf("re-add: %+v %v %v", second, created, err)
	}
	if err := s.sweep(); err != nil {
		t.Fatal(err)
	}
	if !revoked(t, s, Token{JTI: "w"}) {
		t.Error("the sweep of the copy that expired during the load removed the new copy")
	}
}

func TestRestart(t *testing.T) {
	clock := newClock()
	dir := t.TempDir()
	s := openAt(t, dir, clock)
	before := clock.Now()
	entries := []Entry{
		{JTI: "j1", Issuer: "iss"},
		{JTI: "j2"},
		{TokenID: "sha256:abc"},
		{Subject: "alice", Issuer: "iss", Before: &before},
		{Subject: "bob"},
		{KeyID: "k1", Reason: "leaked"},
		{SID: "s1", Issuer: "iss"},
		{SID: "s2"},
	}
	toks := []Token{
		{Issuer: "iss", JTI: "j1"},
		{Issuer: "other", JTI: "j2"},
		{ID: "sha256:abc"},
		{Issuer: "iss", Subject: "alice", IssuedAt: before.Unix() - 10, HasIssuedAt: true},
		{Subject: "bob"},
		{KeyID: "k1"},
		{Issuer: "iss", SID: "s1"},
		{Issuer: "other", SID: "s2"},
	}
	var stored []Entry
	for _, e := range entries {
		stored = append(stored, mustAdd(t, s, e))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, dir, clock)
	for i, tok := range toks {
		if !revoked(t, s, tok) {
			t.Errorf("after restart, %+v no longer revokes %+v", entries[i], tok)
		}
	}
	for _, e := range stored {
		got, ok, err := s.Get(e.ID)
		if err != nil || !ok {
			t.Fatalf("Get(%s) after restart: %v %v", e.ID, ok, err)
		}
		if !sameEntry(got, e) {
			t.Errorf("after restart Get = %+v, want %+v", got, e)
		}
	}
	if _, ok, err := s.Delete(stored[5].ID); !ok || err != nil {
		t.Fatalf("Delete: %v %v", ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, dir, clock)
	if revoked(t, s, toks[5]) {
		t.Error("deleted entry matches after restart")
	}
	if !revoked(t, s, toks[0]) {
		t.Error("other entries lost after restart")
	}
	if c := s.Counts(); c[KindKey] != 0 || c[KindJTI] != 2 || c[KindToken] != 1 || c[KindSubject] != 2 || c[KindSession] != 2 {
		t.Errorf("Counts = %v", c)
	}
}

func sameEntry(a, b Entry) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestIdempotent(t *testing.T) {
	clock := newClock()
	s := openAt(t, t.TempDir(), clock)
	exp := clock.Now().Add(time.Hour)
	first := mustAdd(t, s, Entry{JTI: "j1", Issuer: "iss", Reason: "first", ExpiresAt: &exp})
	clock.Advance(time.Second)
	exp2 := exp.Add(time.Hour)
	again, created, err := s.Add(Entry{JTI: "j1", Issuer: "iss", Reason: "second", ExpiresAt: &exp2, Kind: KindJTI})
	if err != nil {
		t.Fatal(err)
	}
	if created || again.ID != first.ID || again.Reason != "first" || !again.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("second Add = %+v created=%v, want the first %+v with its reason and created_at", again, created, first)
	}
	if !again.ExpiresAt.Equal(exp2.Truncate(time.Second).Add(time.Second)) {
		t.Errorf("second Add: expires_at %v, want it extended to %v", again.ExpiresAt, exp2)
	}
	// The same entry stored with its own ID (as a copy from another node).
	copied := first
	copied.CreatedAt = time.Time{}
	if got, created, err := s.Add(copied); err != nil || created || got.ID != first.ID {
		t.Errorf("Add with its own ID: %+v %v %v", got, created, err)
	}
	if l, _, _ := s.List("", "", 10); len(l) != 1 {
		t.Errorf("List = %d entries, want 1", len(l))
	}
	if c := s.Counts()[KindJTI]; c != 1 {
		t.Errorf("Counts[jti] = %d", c)
	}

	// Same entry in another store (another node): same ID.
	other := openAt(t, t.TempDir(), newClock())
	if e := mustAdd(t, other, Entry{JTI: "j1", Issuer: "iss"}); e.ID != first.ID {
		t.Errorf("ID differs between stores: %s, %s", e.ID, first.ID)
	}
}

// IDs are part of the API (they go into URLs and other nodes' stores):
// this pins the derivation.
func TestIDsAreStable(t *testing.T) {
	before := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		e  Entry
		id string
	}{
		{Entry{Kind: KindJTI, JTI: "abc", Issuer: "https://issuer.example"}, "RGPRTCR_Ms69f839xoskWQ"},
		{Entry{Kind: KindSubject, Subject: "alice", Before: &before}, "R7ey2LH2ATuPq7-vSX_vZg"},
		{Entry{Kind: KindKey, KeyID: "k1"}, "e3szSHEF6AEE-IkqCZ8TMA"},
	} {
		if got := entryID(&c.e); got != c.id {
			t.Errorf("entryID(%+v) = %s, want %s", c.e, got, c.id)
		}
		if _, ok := decodeID(c.id); !ok {
			t.Errorf("decodeID(%s) fails", c.id)
		}
	}
	// R ends the ID with stray low bits: a second spelling of the same
	// bytes, which must not name the entry too.
	for _, bad := range []string{"", "abc", "RGPRTCR_Ms69f839xoskWR", "RGPRTCR_Ms69f839xoskWQ=", "RGPRTCR_Ms69f839xoskW+", "../../../etc/passwd/xx"} {
		if _, ok := decodeID(bad); ok {
			t.Errorf("decodeID(%q) accepted", bad)
		}
	}
}

func TestValidation(t *testing.T) {
	clock := newClock()
	now := clock.Now()
	past, soon := now.Add(-time.Second), now
	long := strings.Repeat("x", 1025)
	far := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		e    Entry
		want string // in the error text
	}{
		{Entry{}, "nothing to match"},
		{Entry{Reason: "why"}, "nothing to match"},
		{Entry{Issuer: "iss"}, "nothing to match"},
		{Entry{JTI: "j", Subject: "s"}, "jti and sub cannot be combined"},
		{Entry{TokenID: "t", KeyID: "k"}, "token_id and kid cannot be combined"},
		{Entry{JTI: "j", TokenID: "t", Subject: "s", KeyID: "k"}, "cannot be combined"},
		{Entry{TokenID: "t", Issuer: "iss"}, "iss goes only with jti, sub or sid"},
		{Entry{KeyID: "k", Issuer: "iss"}, "iss goes only with jti, sub or sid"},
		{Entry{SID: "s", Before: &now}, "before goes only with sub"},
		{Entry{SID: "s", KeyID: "k"}, "kid and sid cannot be combined"},
		{Entry{SID: "s", Kind: KindSubject}, `kind "subject" does not fit`},
		{Entry{SID: long}, "sid is longer than 1024 bytes"},
		{Entry{JTI: "j", Before: &now}, "before goes only with sub"},
		{Entry{KeyID: "k", Before: &now}, "before goes only with sub"},
		{Entry{JTI: "j", Kind: KindKey}, `kind "key" does not fit`},
		{Entry{Subject: "s", Kind: KindJTI}, `kind "jti" does not fit`},
		{Entry{JTI: "j", Kind: "user"}, `unknown kind "user"`},
		{Entry{JTI: "j", ExpiresAt: &past}, "expires_at"},
		{Entry{JTI: "j", ExpiresAt: &soon}, "not in the future"},
		{Entry{JTI: "j", ExpiresAt: &time.Time{}}, "out of range"},
		{Entry{JTI: "j", ExpiresAt: &far}, "out of range"},
		{Entry{Subject: "s", Before: &time.Time{}}, "out of range"},
		{Entry{Subject: "s", Before: &far}, "out of range"},
		{Entry{Subject: "s", Before: ptr(time.Unix(-5, 0))}, "out of range"},
		{Entry{JTI: long}, "jti is longer than 1024 bytes"},
		{Entry{JTI: "j", Issuer: long}, "iss is longer"},
		{Entry{Subject: long}, "sub is longer"},
		{Entry{KeyID: long}, "kid is longer"},
		{Entry{TokenID: strings.Repeat("t", 2050)}, "token_id is longer"},
		{Entry{KeyID: "k", Reason: long}, "reason is longer"},
		{Entry{KeyID: "k", ID: "RGPRTCR_Ms69f839xoskWQ"}, "does not match the entry's fields"},
	}
	s := openAt(t, t.TempDir(), clock)
	for _, c := range cases {
		_, created, err := s.Add(c.e)
		if err == nil {
			t.Errorf("Add(%+v) accepted", c.e)
			continue
		}
		var ie *InvalidError
		if !errors.Is(err, ErrInvalid) || !errors.As(err, &ie) {
			t.Errorf("Add(%+v): error %v is not an InvalidError", c.e, err)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Add(%+v) error %q, want it to say %q", c.e, err, c.want)
		}
		if created {
			t.Errorf("Add(%+v) failed but says created", c.e)
		}
	}
	if l, _, err := s.List("", "", 100); err != nil || len(l) != 0 {
		t.Errorf("rejected entries were stored: %+v %v", l, err)
	}
	for _, n := range s.Counts() {
		if n != 0 {
			t.Errorf("rejected entries in the index: %v", s.Counts())
		}
	}

	// Bad List arguments are invalid too; a missing ID is just not found.
	for _, c := range []struct {
		kind   Kind
		cursor string
		limit  int
	}{{"", "", 0}, {"", "", -1}, {"users", "", 10}, {"", "not a cursor", 10}, {"", "AAAA", 10}} {
		if _, _, err := s.List(c.kind, c.cursor, c.limit); !errors.Is(err, ErrInvalid) {
			t.Errorf("List(%q, %q, %d) error %v, want ErrInvalid", c.kind, c.cursor, c.limit, err)
		}
	}
	for _, id := range []string{"", "nope", "../x", "RGPRTCR_Ms69f839xoskWQ"} {
		if _, ok, err := s.Get(id); ok || err != nil {
			t.Errorf("Get(%q) = %v, %v", id, ok, err)
		}
		if _, ok, err := s.Delete(id); ok || err != nil {
			t.Errorf("Delete(%q) = %v, %v", id, ok, err)
		}
	}
}

func TestPagination(t *testing.T) {
	clock := newClock()
	s := openAt(t, t.TempDir(), clock)
	var want []string
	add := func(e Entry) {
		want = append(want, mustAdd(t, s, e).ID)
	}
	for i := range 10 {
		add(Entry{JTI: fmt.Sprintf("j%d", i)})
	}
	var got []string
	cursor, pages := "", 0
	for {
		page, next, err := s.List("", cursor, 3)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(page) > 3 || (next != "" && len(page) != 3) {
			t.Fatalf("page %d has %d entries, next %q", pages, len(page), next)
		}
		for _, e := range page {
			got = append(got, e.ID)
		}
		if pages == 2 {
			// Added while paging: must show up at the end, exactly once. The
			// clock even steps back, which must not put them earlier.
			add(Entry{JTI: "late1"})
			clock.Advance(-time.Hour)
			add(Entry{KeyID: "late2"})
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("paged IDs:\n%v\nwant (oldest first):\n%v", got, want)
	}
	if pages != 4 {
		t.Errorf("%d pages for 12 entries by 3", pages)
	}

	// One kind, with the cursor entry deleted between pages.
	p1, next, err := s.List(KindJTI, "", 4)
	if err != nil || len(p1) != 4 || next == "" {
		t.Fatalf("List(jti) = %d, %q, %v", len(p1), next, err)
	}
	if _, ok, _ := s.Delete(p1[3].ID); !ok {
		t.Fatal("delete")
	}
	p2, next, err := s.List(KindJTI, next, 100)
	if err != nil || next != "" {
		t.Fatalf("List(jti) page 2: %q %v", next, err)
	}
	if len(p2) != 7 || p2[0].ID != want[4] || p2[6].ID != want[10] {
		t.Errorf("page 2 of jti = %d entries starting %v", len(p2), p2)
	}
	if l, next, _ := s.List(KindKey, "", 1); len(l) != 1 || l[0].ID != want[11] || next != "" {
		t.Errorf("List(key) = %+v, %q", l, next)
	}
	if l, next, _ := s.List(KindSubject, "", 1); len(l) != 0 || next != "" {
		t.Errorf("List(subject) = %+v, %q", l, next)
	}
}

func TestConcurrent(t *testing.T) {
	clock := newClock()
	s := openAt(t, t.TempDir(), clock)
	// Permanent entries must match throughout; tokens never revoked must
	// never match; churned entries come and go.
	for i := range 20 {
		mustAdd(t, s, Entry{JTI: fmt.Sprintf("perm-%d", i), Issuer: "iss"})
	}
	const churn = 30
	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		reads   atomic.Int64
		failure atomic.Value
	)
	fail := func(format string, args ...any) { failure.CompareAndSwap(nil, fmt.Sprintf(format, args...)) }
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				perm := Token{Issuer: "iss", JTI: fmt.Sprintf("perm-%d", (i+r)%20)}
				never := Token{Issuer: "iss", JTI: fmt.Sprintf("never-%d", i%50), Subject: "nobody", KeyID: "good"}
				ch := Token{Issuer: "iss", JTI: fmt.Sprintf("c-%d", i%churn), Subject: fmt.Sprintf("u-%d", i%churn)}
				if ok, err := s.Revoked(&perm); !ok || err != nil {
					fail("permanent entry not matched: %v %v", ok, err)
				}
				if ok, err := s.Revoked(&never); ok || err != nil {
					fail("never-revoked token matched: %v %v", ok, err)
				}
				if _, err := s.Revoked(&ch); err != nil {
					fail("churn: %v", err)
				}
				reads.Add(3)
			}
		}()
	}
	// Sweeps, listings and gauges run alongside.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if err := s.sweep(); err != nil {
				fail("sweep: %v", err)
			}
			if _, _, err := s.List("", "", 50); err != nil {
				fail("list: %v", err)
			}
			_ = s.Counts()
		}
	}()
	var ws sync.WaitGroup
	for w := range 3 {
		ws.Add(1)
		go func() {
			defer ws.Done()
			for i := range 40 {
				e := Entry{JTI: fmt.Sprintf("c-%d", (i*3+w)%churn)}
				if w == 2 {
					e = Entry{Subject: fmt.Sprintf("u-%d", i%churn), Issuer: "iss"}
				}
				got, _, err := s.Add(e)
				if err != nil {
					fail("add: %v", err)
					return
				}
				if i%2 == 0 {
					if _, _, err := s.Delete(got.ID); err != nil {
						fail("delete: %v", err)
						return
					}
				}
			}
		}()
	}
	ws.Wait()
	stop.Store(true)
	wg.Wait()
	if f := failure.Load(); f != nil {
		t.Fatal(f)
	}
	if reads.Load() == 0 {
		t.Fatal("no reads ran")
	}
	// The index agrees with the stored list.
	all, _, err := s.List("", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, e := range all {
		stored[e.JTI+"|"+e.Subject] = true
	}
	for i := range churn {
		jti := fmt.Sprintf("c-%d", i)
		sub := fmt.Sprintf("u-%d", i)
		if got := revoked(t, s, Token{Issuer: "iss", JTI: jti}); got != stored[jti+"|"] {
			t.Errorf("%s: revoked %v, stored %v", jti, got, stored[jti+"|"])
		}
		if got := revoked(t, s, Token{Issuer: "iss", Subject: sub}); got != stored["|"+sub] {
			t.Errorf("%s: revoked %v, stored %v", sub, got, stored["|"+sub])
		}
	}
	c := s.Counts()
	if c[KindJTI]+c[KindSubject] != len(all) {
		t.Errorf("Counts %v, %d entries stored", c, len(all))
	}
}

func TestLockedDirectory(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir, newClock())
	_, err := Open(dir, Options{Logger: nopLogger})
	if err == nil {
		t.Fatal("second Open of a locked directory succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q: want ErrLocked naming %s", err, dir)
	}
	// The first store still works, and the directory opens once it closes.
	mustAdd(t, s, Entry{KeyID: "k"})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openAt(t, dir, newClock())
	if !revoked(t, s2, Token{KeyID: "k"}) {
		t.Error("entry lost")
	}
}

func TestClosed(t *testing.T) {
	s := openAt(t, t.TempDir(), newClock())
	mustAdd(t, s, Entry{KeyID: "k"})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Revoked(&Token{KeyID: "k"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Revoked after Close: %v, want ErrClosed (fail closed)", err)
	}
	if _, _, err := s.Add(Entry{KeyID: "x"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v", err)
	}
	if _, _, err := s.List("", "", 1); !errors.Is(err, ErrClosed) {
		t.Errorf("List after Close: %v", err)
	}
	if _, _, err := s.Get("e3szSHEF6AEE-IkqCZ8TMA"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
	if _, _, err := s.Delete("e3szSHEF6AEE-IkqCZ8TMA"); !errors.Is(err, ErrClosed) {
		t.Errorf("Delete after Close: %v", err)
	}
}

func TestRevokedDoesNotAllocate(t *testing.T) {
	clock := newClock()
	s := openAt(t, t.TempDir(), clock)
	exp := clock.Now().Add(time.Hour)
	mustAdd(t, s, Entry{JTI: "j1", Issuer: "iss", ExpiresAt: &exp})
	mustAdd(t, s, Entry{Subject: "alice"})
	mustAdd(t, s, Entry{Subject: "alice", Before: ptr(clock.Now().Add(-time.Hour))})
	mustAdd(t, s, Entry{KeyID: "k1"})
	mustAdd(t, s, Entry{TokenID: "sha256:x"})
	mustAdd(t, s, Entry{SID: "s1", Issuer: "iss"})
	mustAdd(t, s, Entry{SID: "s9"})
	hit := Token{ID: "iss#j1", Issuer: "iss", JTI: "j1", Subject: "bob", KeyID: "k0"}
	sub := Token{ID: "iss#j2", Issuer: "iss", JTI: "j2", Subject: "alice", KeyID: "k0"}
	miss := Token{ID: "iss#j2", Issuer: "iss", JTI: "j2", Subject: "bob", KeyID: "k0", SID: "s2", IssuedAt: 1, HasIssuedAt: true}
	session := Token{ID: "iss#j3", Issuer: "iss", JTI: "j3", Subject: "bob", KeyID: "k0", SID: "s1", IssuedAt: 1, HasIssuedAt: true}
	for _, tok := range []*Token{&hit, &sub, &miss, &session} {
		want := tok != &miss
		if a := testing.AllocsPerRun(100, func() {
			if r, _ := s.Revoked(tok); r != want {
				t.Fatalf("%+v: revoked %v", tok, r)
			}
		}); a != 0 {
			t.Errorf("Revoked(%+v) allocates %v times", tok, a)
		}
	}
}

func TestEntryJSON(t *testing.T) {
	clock := newClock()
	s := openAt(t, t.TempDir(), clock)
	exp := clock.Now().Add(time.Hour)
	e := mustAdd(t, s, Entry{Subject: "alice", Issuer: "iss", Reason: "reset", ExpiresAt: &exp})
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for _, k := range []string{"id", "kind", "sub", "iss", "before", "reason", "created_at", "expires_at"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON %s lacks %q", b, k)
		}
	}
	for _, k := range []string{"jti", "token_id", "kid"} {
		if _, ok := m[k]; ok {
			t.Errorf("JSON %s has %q", b, k)
		}
	}
	if m["kind"] != "subject" {
		t.Errorf("kind = %v", m["kind"])
	}
	// What the API reads back is what it would store: same ID, no-op.
	var back Entry
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got, created, err := s.Add(back); err != nil || created || got.ID != e.ID {
		t.Errorf("re-adding the JSON form: %v %v %v", got.ID, created, err)
	}
}

func TestValueEncoding(t *testing.T) {
	before := time.Unix(1700000000, 0).UTC()
	exp := time.Unix(1800000000, 0).UTC()
	for _, e := range []Entry{
		{Kind: KindJTI, JTI: "j", Issuer: "iss", Reason: "r", ExpiresAt: &exp},
		{Kind: KindToken, TokenID: "sha256:abc"},
		{Kind: KindSubject, Subject: "s", Before: &before},
		{Kind: KindKey, KeyID: strings.Repeat("k", 1024), Reason: strings.Repeat("r", 1024)},
	} {
		e.CreatedAt = time.Unix(1750000000, 123456789).UTC()
		e.ID = entryID(&e)
		v := encodeValue(&e)
		r, err := decodeValue(v)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.entry(e.ID); !sameEntry(got, e) {
			t.Errorf("round trip: %+v, want %+v", got, e)
		}
		for i := range v {
			if _, err := decodeValue(v[:i]); err == nil {
				t.Errorf("truncated record (%d of %d bytes) decodes", i, len(v))
			}
		}
		if _, err := decodeValue(append(v, 0)); err == nil {
			t.Error("record with trailing byte decodes")
		}
	}
}

// A revocation acknowledged by Add survives kill -9 of the process.
func TestDurableAgainstKill(t *testing.T) {
	if dir := os.Getenv("JWTGUARD_KILL_HELPER_DIR"); dir != "" {
		s, err := Open(dir, Options{})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		e, _, err := s.Add(Entry{JTI: "killed", Reason: "durability"})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("added", e.ID)
		time.Sleep(time.Minute) // killed long before this ends
		os.Exit(0)
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDurableAgainstKill$")
	cmd.Env = append(os.Environ(), "JWTGUARD_KILL_HELPER_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	_ = cmd.Process.Kill() // SIGKILL: no Close, no flush
	_ = cmd.Wait()
	if !strings.HasPrefix(line, "added ") {
		t.Fatalf("helper said %q", line)
	}
	id := strings.TrimSpace(strings.TrimPrefix(line, "added "))
	s := openAt(t, dir, newClock())
	if e, ok, err := s.Get(id); !ok || err != nil || e.JTI != "killed" {
		t.Fatalf("after kill -9: Get(%s) = %+v %v %v", id, e, ok, err)
	}
	if !revoked(t, s, Token{JTI: "killed"}) {
		t.Error("after kill -9 the entry does not match")
	}
}

func countPrefix(t *testing.T, s *Store, prefix string) int {
	t.Helper()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// An entry keeps matching for the grace period (the largest leeway of the
// handlers using the store) past its expires_at: a handler with leeway
// still accepts the token for that long.
func TestGraceKeepsEntriesPastExpiry(t *testing.T) {
	clock := newClock()
	dir := t.TempDir()
	s, err := Open(dir, Options{Now: clock.Now, Logger: nopLogger, Grace: 59500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	if s.Grace() != time.Minute {
		t.Fatalf("Grace() = %v, want 59.5s rounded up to 1m", s.Grace())
	}
	exp := clock.Now().Add(2 * time.Second)
	e := mustAdd(t, s, Entry{JTI: "j1", ExpiresAt: &exp})
	tok := Token{JTI: "j1"}

	clock.Advance(30 * time.Second) // past exp, inside the grace
	if !revoked(t, s, tok) {
		t.Fatal("entry stopped matching at its expires_at, inside the grace period")
	}
	if err := s.sweep(); err != nil {
		t.Fatal(err)
	}
	if !revoked(t, s, tok) {
		t.Fatal("the sweep took out an entry inside its grace period")
	}
	if got, ok, _ := s.Get(e.ID); !ok || !got.ExpiresAt.Equal(*e.ExpiresAt) {
		t.Errorf("Get inside the grace = %+v %v, want the entry with its own expires_at", got, ok)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openGrace(t, dir, clock, time.Minute)
	s.SetGrace(time.Second) // never lowers
	if s.Grace() != time.Minute {
		t.Fatalf("Grace() = %v after SetGrace(1s), want 1m", s.Grace())
	}
	if !revoked(t, s, tok) {
		t.Fatal("entry inside its grace period lost across a restart")
	}
	s2 := openGrace(t, t.TempDir(), clock, 0)
	if s2.Grace() != 0 {
		t.Errorf("a store opened without Grace has %v", s2.Grace())
	}

	clock.Advance(34 * time.Second) // past exp (rounded up to the second) + 60s
	if revoked(t, s, tok) {
		t.Error("entry still matches after its grace period")
	}
	if err := s.sweep(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{entryPrefix, idPrefix, kindPrefix, expiryPrefix} {
		if n := countPrefix(t, s, p); n != 0 {
			t.Errorf("%d %s keys left after the sweep", n, p)
		}
	}
}

// A grace period raised after an entry was written (a reload with a larger
// leeway) must hold for that entry too: no TTL written with the entry may
// drop it from disk first. The store's clock runs an hour behind the wall
// clock, so a TTL set from the entry's expiry would already have passed.
func TestGraceRaisedAfterWrite(t *testing.T) {
	clock := &fakeClock{t: time.Now().Add(-time.Hour).Truncate(time.Second)}
	dir := t.TempDir()
	s := openAt(t, dir, clock)
	exp := clock.Now().Add(time.Minute)
	e := mustAdd(t, s, Entry{JTI: "j1", ExpiresAt: &exp})
	s.SetGrace(10 * time.Minute)
	clock.Advance(5 * time.Minute)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openGrace(t, dir, clock, 10*time.Minute)
	if !revoked(t, s, Token{JTI: "j1"}) {
		t.Error("entry lost from disk inside the raised grace period")
	}
	if _, ok, _ := s.Get(e.ID); !ok {
		t.Error("Get: entry lost from disk inside the raised grace period")
	}
}

// Posting an entry again extends its expiry to the later of the two (none
// is later than any) and never shortens it, with no gap in between.
func TestRepeatedAddExtends(t *testing.T) {
	clock := newClock()
	dir := t.TempDir()
	s := openAt(t, dir, clock)
	soon := clock.Now().Add(2 * time.Minute)
	first := mustAdd(t, s, Entry{JTI: "j", Reason: "stolen", ExpiresAt: &soon})
	tok := Token{JTI: "j"}

	later := clock.Now().Add(time.Hour).Truncate(time.Second)
	got, created, err := s.Add(Entry{JTI: "j", ExpiresAt: &later})
	if err != nil || created || !got.ExpiresAt.Equal(later) || got.Reason != "stolen" {
		t.Fatalf("Add with a later expiry = %+v created=%v err=%v", got, created, err)
	}
	earlier := clock.Now().Add(10 * time.Minute)
	if got, _, _ := s.Add(Entry{JTI: "j", ExpiresAt: &earlier}); !got.ExpiresAt.Equal(later) {
		t.Errorf("Add with an earlier expiry shortened it: %v", got.ExpiresAt)
	}
	if got, _, _ := s.Add(Entry{JTI: "j"}); got.ExpiresAt != nil || got.ID != first.ID || !got.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("Add without expiry = %+v, want the entry with no expires_at", got)
	}
	if got, _, _ := s.Add(Entry{JTI: "j", ExpiresAt: &later}); got.ExpiresAt != nil {
		t.Errorf("Add with an expiry shortened a never-expiring entry to %v", got.ExpiresAt)
	}

	clock.Advance(2 * time.Hour)
	if err := s.sweep(); err != nil {
		t.Fatal(err)
	}
	if !revoked(t, s, tok) {
		t.Fatal("extended entry stopped matching at an old expiry")
	}
	if n := countPrefix(t, s, expiryPrefix); n != 0 {
		t.Errorf("%d expiry keys left for an entry that never expires", n)
	}
	if c := s.Counts()[KindJTI]; c != 1 {
		t.Errorf("Counts[jti] = %d, want 1", c)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, dir, clock)
	if got, ok, _ := s.Get(first.ID); !ok || got.ExpiresAt != nil || !revoked(t, s, tok) {
		t.Errorf("after restart: %+v %v", got, ok)
	}
}

func openGrace(t testing.TB, dir string, clock *fakeClock, grace time.Duration) *Store {
	t.Helper()
	s, err := Open(dir, Options{Now: clock.Now, Logger: nopLogger, Grace: grace})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
