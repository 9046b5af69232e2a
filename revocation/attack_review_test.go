package revocation

// Attack review: see /work/main/attack_review_test.go.

import (
	"testing"
	"time"
)

// A store with a grace period keeps entries that long past expires_at,
// because handlers accept tokens up to their leeway past exp. An entry
// for such a token (expires_at = its exp, in the past but inside the
// grace period) is still refused as "not in the future": the token the
// leeway keeps valid cannot be revoked, by the admin API or by detection.
func TestAttackAddInsideGracePeriod(t *testing.T) {
	s, err := Open(t.TempDir(), Options{Grace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	exp := time.Now().Add(-5 * time.Second)
	e, _, err := s.Add(Entry{TokenID: "https://idp#late", ExpiresAt: &exp})
	if err != nil {
		t.Fatalf("adding a token entry whose expires_at is 5s past, with a grace of 1m: %v", err)
	}
	hit, err := s.Revoked(&Token{ID: "https://idp#late", Issuer: "https://idp", JTI: "late"})
	if err != nil || !hit {
		t.Fatalf("entry %s does not match: %v %v", e.ID, hit, err)
	}
}
