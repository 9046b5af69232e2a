package verifier

// Regression tests for findings of a security review.

import (
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// flushingSet hands out the key, then (as a concurrent JWKS refresh would,
// between the lookup and the cache insert) removes it and flushes the cache.
type flushingSet struct {
	key     *Key
	removed bool
	armed   bool
	v       *Verifier
}

func (s *flushingSet) Keys(kid, iss string) ([]*Key, bool) {
	if s.removed {
		return nil, true
	}
	if s.armed {
		// the refresh that drops the key completes while this request is
		// still verifying with the key it already got
		defer func() { s.removed = true; s.v.FlushCache() }()
	}
	return []*Key{s.key}, true
}

func TestCacheFlushWinsOverVerificationInFlight(t *testing.T) {
	k := keys(t)
	set := &flushingSet{key: pubKey(t, &k.rsa.PublicKey)}
	v := newVerifier(t, Config{KeySets: []KeySet{set}})
	set.v = v
	tok := mint(t, jwt.SigningMethodRS256, k.rsa, map[string]any{"kid": "k1"}, validClaims())
	if _, err := v.Verify(tok); err != nil { // first sight: doorkeeper
		t.Fatal(err)
	}
	set.armed = true
	if _, err := v.Verify(tok); err != nil { // in flight during the refresh
		t.Fatal(err)
	}
	// The key is gone and the cache was flushed: the token must now fail.
	if _, err := v.Verify(tok); err == nil {
		t.Errorf("token verified by a key removed (and cache flushed) is still accepted from the cache")
	}
}

type unloadedSet struct{}

func (unloadedSet) Keys(kid, iss string) ([]*Key, bool) { return nil, false }

// An HS256 token can never need JWK Set keys (oct keys are refused), yet a
// bad HS256 signature answers keys_unavailable (503) while a JWK Set has not loaded.
func TestHMACTokenNeverWaitsForKeySets(t *testing.T) {
	k := keys(t)
	v := newVerifier(t, Config{Keys: []*Key{hmacKey(t, k.secret)}, KeySets: []KeySet{unloadedSet{}}})
	bad := mint(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), nil, validClaims())
	if _, err := v.Verify(bad); code(err) != CodeSignature {
		t.Errorf("forged HS256 token: got %s, want signature", code(err))
	}
}
