package dpop

import (
	"bytes"
	"testing"
	"time"
)

func TestNonces(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	clock := newClock(testNow) // the start of a slot: 1767225600 is a multiple of 60
	n, err := NewNonces(secret, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	issued := n.Nonce()
	if len(issued) != 22 {
		t.Fatalf("nonce %q", issued)
	}
	for _, c := range []struct {
		at time.Duration
		ok bool
	}{
		{0, true},
		{59 * time.Second, true},
		{60 * time.Second, true}, // the next slot accepts the previous one's
		{119 * time.Second, true},
		{120 * time.Second, false},
		// A node whose clock is behind, by up to the skew, accepts a
		// nonce another node issued in the next slot.
		{-time.Second, true},
		{-5 * time.Second, true},
		{-6 * time.Second, false},
	} {
		clock.Set(testNow.Add(c.at))
		if got := n.Check(issued); got != c.ok {
			t.Errorf("at %+v: Check %v, want %v", c.at, got, c.ok)
		}
	}
	clock.Set(testNow.Add(30 * time.Second))
	if n.Nonce() != issued {
		t.Fatal("nonce changed within its slot")
	}
	clock.Set(testNow.Add(60 * time.Second))
	if n.Nonce() == issued {
		t.Fatal("nonce did not change with the slot")
	}

	// Another node with the secret issues and accepts the same nonces.
	other, _ := NewNonces(secret, clock.Now)
	if other.Nonce() != n.Nonce() || !other.Check(issued) {
		t.Fatal("nodes sharing a secret disagree")
	}
	// A node with another secret accepts none of them.
	stranger, _ := NewNonces(bytes.Repeat([]byte{8}, 32), clock.Now)
	if stranger.Check(issued) || stranger.Check(n.Nonce()) {
		t.Fatal("a nonce accepted under another secret")
	}
	// Random secrets differ per source.
	r1, _ := NewNonces(nil, clock.Now)
	r2, _ := NewNonces(nil, clock.Now)
	if r1.Nonce() == r2.Nonce() {
		t.Fatal("two random secrets gave one nonce")
	}
	for _, bad := range []string{"", "x", issued + "A", issued[:21]} {
		if n.Check(bad) {
			t.Errorf("Check(%q) accepted", bad)
		}
	}
	if _, err := NewNonces(make([]byte, 31), nil); err == nil {
		t.Fatal("31-byte secret accepted")
	}
}

// TestNonceSecretCopied: changing the caller's slice afterwards does not
// change the nonces.
func TestNonceSecretCopied(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	n, _ := NewNonces(secret, fixedNow)
	before := n.compute(1)
	secret[0] = 9
	if n.compute(1) != before {
		t.Fatal("secret not copied")
	}
}

func BenchmarkNonceCheck(b *testing.B) {
	n, _ := NewNonces(nil, nil)
	nonce := n.Nonce()
	b.ReportAllocs()
	for b.Loop() {
		if !n.Check(nonce) {
			b.Fatal("refused")
		}
	}
}
