package signals

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtguard/caddy-jwtguard/jwks"
)

// TestTransmittersApart: each transmitter's keys and credential count for
// its own SETs only. A SET naming A, signed with B's key (kid and all), is
// invalid_key; B's credential does not authenticate A's SETs.
func TestTransmittersApart(t *testing.T) {
	a, b := newIdP(t), newIdP(t)
	b.kid = "kb"
	f := newFixture(t, Config{Transmitters: []Transmitter{
		{Issuer: a.iss(), Authorization: "Bearer for-a", Keys: a.keySet(t, jwks.WellKnownSSF)},
		{Issuer: b.iss(), Authorization: "Bearer for-b", Keys: b.keySet(t, jwks.WellKnownSSF)},
	}})
	asB := b.sign(t, setHeader, setClaims(a, "x-1")) // iss A, B's key and kid
	wantErr(t, f.push(t, asB, "Authorization", "Bearer for-a"), ErrInvalidKey)
	asBwithAkid := signWith(t, jwt.SigningMethodES256, b.key, a.kid, setHeader, setClaims(a, "x-2"))
	wantErr(t, f.push(t, asBwithAkid, "Authorization", "Bearer for-a"), ErrInvalidKey)

	wantErr(t, f.push(t, a.set(t, "x-3", EventAccountDisabled, disabled), "Authorization", "Bearer for-b"), ErrAuthenticationFailed)
	wantErr(t, f.push(t, b.set(t, "x-4", EventAccountDisabled, disabled), "Authorization", "Bearer for-a"), ErrAuthenticationFailed)
	if got := f.entries(t); len(got) != 0 {
		t.Fatalf("stored %+v", got)
	}
	if w := f.push(t, b.set(t, "x-5", EventAccountDisabled, disabled), "Authorization", "Bearer for-b"); w.Code != http.StatusAccepted {
		t.Fatalf("B's own SET: %d %s", w.Code, w.Body)
	}
}

// TestUnknownKIDFlood: SETs with made-up kids cost at most one JWK Set
// fetch per transmitter per 30 s, however many arrive.
func TestUnknownKIDFlood(t *testing.T) {
	p := newIdP(t)
	f := withIdP(t, p, "")
	loads := p.jwks.Load()
	for i := range 200 {
		set := signWith(t, jwt.SigningMethodES256, p.key, fmt.Sprintf("kid-%d", i), setHeader, setClaims(p, fmt.Sprintf("flood-%d", i)))
		wantErr(t, f.push(t, set), ErrInvalidKey)
	}
	if n := p.jwks.Load() - loads; n > 1 {
		t.Fatalf("%d JWK Set fetches for 200 unknown kids", n)
	}
}
