package revocation

import (
	"fmt"
	"testing"
	"time"
)

func addRecord(ix *index, r record) ref {
	x := ix.refOf(&r)
	ix.add(x)
	return x
}

// The filters grow and are rebuilt as entries come and go; no rebuild may
// lose a key (a false negative would let a revoked token through).
func TestFilterRebuilds(t *testing.T) {
	ix := newIndex()
	now := &lazyNow{clock: time.Now}
	const n = 6000
	refs := make([]ref, n)
	for i := range n {
		refs[i] = addRecord(ix, record{kind: KindJTI, issuer: []byte("iss"), field: fmt.Appendf(nil, "j%d", i)})
	}
	words := len(ix.filt[groupJTIToken].words)
	if words <= len(newFilter(0).words) {
		t.Fatalf("filter did not grow: %d words for %d keys", words, n)
	}
	for i := range n {
		if !ix.revoked(&Token{Issuer: "iss", JTI: fmt.Sprintf("j%d", i)}, now) {
			t.Fatalf("j%d lost after growth", i)
		}
	}
	for i := range n - 1000 {
		if !ix.remove(refs[i]) {
			t.Fatalf("remove j%d failed", i)
		}
	}
	if ix.stale[groupJTIToken] >= n-1000 {
		t.Error("no rebuild after most keys were deleted")
	}
	for i := range n {
		want := i >= n-1000
		if got := ix.revoked(&Token{Issuer: "iss", JTI: fmt.Sprintf("j%d", i)}, now); got != want {
			t.Fatalf("j%d: revoked %v, want %v", i, got, want)
		}
	}
	if ix.remove(refs[0]) {
		t.Error("removing an absent entry reports success")
	}
	if ix.counts[kindCode(KindJTI)] != 1000 {
		t.Errorf("count %d, want 1000", ix.counts[kindCode(KindJTI)])
	}

	// The filter does its job: few absent keys get past it.
	f := &ix.filt[groupJTIToken]
	pass := 0
	for i := range 100000 {
		if f.has(ix.h.strA(fmt.Sprintf("absent-%d", i))) {
			pass++
		}
	}
	if pass > 2000 {
		t.Errorf("filter lets %d of 100000 absent keys through", pass)
	}
}

func TestSubjectsExpiryPerEntry(t *testing.T) {
	clock := newClock()
	now := clock.Now().Unix()
	ix := newIndex()
	sub := func(before, expires int64) record {
		return record{kind: KindSubject, field: []byte("alice"), before: before, expires: expires}
	}
	older := addRecord(ix, sub(now-3600, 0))
	newer := addRecord(ix, sub(now-60, now+600))
	tok := func(iat int64) *Token { return &Token{Subject: "alice", IssuedAt: iat, HasIssuedAt: true} }
	at := func(t int64) *lazyNow { return &lazyNow{clock: func() time.Time { return time.Unix(t, 0) }} }

	if !ix.revoked(tok(now-120), at(now)) {
		t.Error("newer before does not apply")
	}
	// The newer entry expires: the older one is still in force.
	if ix.revoked(tok(now-120), at(now+601)) {
		t.Error("expired entry's before still applies")
	}
	if !ix.revoked(tok(now-7200), at(now+601)) {
		t.Error("older entry lost when the newer expired")
	}
	if !ix.remove(newer) || !ix.revoked(tok(now-7200), at(now)) || ix.revoked(tok(now-120), at(now)) {
		t.Error("removing the newer entry")
	}
	if !ix.remove(older) || ix.revoked(&Token{Subject: "alice"}, at(now)) {
		t.Error("removing the older entry")
	}
	if ix.remove(older) {
		t.Error("removed twice")
	}
}

func TestRelExp(t *testing.T) {
	for _, c := range []struct {
		unix, now int64
		alive     bool
	}{
		{0, 2e9, true},
		{1000, expEpoch + 10, false}, // before 2020: long expired
		{expEpoch + 100, expEpoch + 99, true},
		{expEpoch + 100, expEpoch + 100, false},
		{1 << 40, 2e9, true}, // beyond 2156: clamped, still alive
	} {
		if got := alive(relExp(c.unix), c.now); got != c.alive {
			t.Errorf("alive(relExp(%d), %d) = %v", c.unix, c.now, got)
		}
	}
}
