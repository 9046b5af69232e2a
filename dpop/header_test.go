package dpop

import (
	"strconv"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// TestHeaderCache: a client's header is read once; proofs with it are
// still checked in full, and only headers of proofs that passed are kept.
func TestHeaderCache(t *testing.T) {
	k := keys()
	v := newVerifier(t, Config{})
	req := testRequest(jkt(t, k.ec256))

	bad := joseProof(t, jose.ES256, k.ec256, claims("htm", "POST"))
	if _, err := v.Verify(bad, req); err != errMethod {
		t.Fatalf("bad proof: %v", err)
	}
	badSig := joseProof(t, jose.ES256, k.ec256, claims())
	badSig = badSig[:len(badSig)-4] + "AAAA"
	if _, err := v.Verify(badSig, req); err != errSignature {
		t.Fatalf("bad signature: %v", err)
	}
	if v.headers.len() != 0 {
		t.Fatal("a failed proof's header was cached")
	}

	first := joseProof(t, jose.ES256, k.ec256, claims())
	if _, err := v.Verify(first, req); err != nil {
		t.Fatal(err)
	}
	second := joseProof(t, jose.ES256, k.ec256, claims())
	p := new(proof)
	if e := v.parse(second, p); e != nil || !p.cached || p.hdr.pub == nil || p.hdr.thumbprint != req.JKT {
		t.Fatalf("second proof's header not from the cache: %v", e)
	}
	if _, err := v.Verify(second, req); err != nil {
		t.Fatal(err)
	}

	// With the header cached: the signature, the binding and ath are
	// still checked.
	badSig = joseProof(t, jose.ES256, k.ec256, claims())
	badSig = badSig[:len(badSig)-4] + "AAAA"
	if _, err := v.Verify(badSig, req); err != errSignature {
		t.Fatalf("bad signature, cached header: %v", err)
	}
	other := req
	other.JKT = jkt(t, k.other)
	if _, err := v.Verify(joseProof(t, jose.ES256, k.ec256, claims()), other); err != errMismatch {
		t.Fatalf("another jkt, cached header: %v", err)
	}
	// ath against two tokens in turn, each remembered after the other.
	tokenB := testToken + "B"
	reqB := req
	reqB.AccessToken = tokenB
	for i := 0; i < 3; i++ {
		if _, err := v.Verify(joseProof(t, jose.ES256, k.ec256, claims("ath", athOf(tokenB))), reqB); err != nil {
			t.Fatalf("token B: %v", err)
		}
		if _, err := v.Verify(joseProof(t, jose.ES256, k.ec256, claims("ath", athOf(tokenB))), req); err != errATH {
			t.Fatalf("token B's ath with token A: %v", err)
		}
		if _, err := v.Verify(joseProof(t, jose.ES256, k.ec256, claims()), reqB); err != errATH {
			t.Fatalf("token A's ath with token B: %v", err)
		}
		if _, err := v.Verify(joseProof(t, jose.ES256, k.ec256, claims()), req); err != nil {
			t.Fatalf("token A: %v", err)
		}
	}
	if v.headers.len() != 1 {
		t.Fatalf("%d headers cached", v.headers.len())
	}
}

func TestHeaderCacheBounded(t *testing.T) {
	c := newHeaderCache()
	for i := 0; i < 3*headerEntries; i++ {
		c.put("h"+strconv.Itoa(i), &proofHeader{})
	}
	if n := c.len(); n > headerEntries || n < headerEntries/2 {
		t.Fatalf("%d entries", n)
	}
	if c.get("h"+strconv.Itoa(3*headerEntries-1)) == nil {
		t.Fatal("the newest entry is missing")
	}
	if c.get(strings.Repeat("x", 10)) != nil {
		t.Fatal("an entry never put")
	}
}
