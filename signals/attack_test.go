package signals

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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

// TestIssuerKeysApart: a SET signed with transmitter A's key but naming B
// as its iss is checked with B's keys, and fails.
func TestIssuerKeysApart(t *testing.T) {
	a, b := newIdP(t), newIdP(t)
	f := newFixture(t, Config{Transmitters: []Transmitter{
		{Issuer: a.iss(), Keys: a.keySet(t, jwks.WellKnownSSF)},
		{Issuer: b.iss(), Keys: b.keySet(t, jwks.WellKnownSSF)},
	}})
	wantErr(t, f.push(t, a.sign(t, setHeader, setClaims(b, "ab-1"))), ErrInvalidKey)
	// B's valid SET in A's poll stream is refused: a stream speaks for
	// its own transmitter only.
	bSet := b.set(t, "ab-2", EventAccountDisabled, disabled)
	a.poll = func(pollRequest) (int, any) {
		return http.StatusOK, map[string]any{"sets": map[string]any{"ab-2": bSet}}
	}
	pl := newPoller(t, f, a, "")
	pl.Once(context.Background())
	pl.Once(context.Background())
	if e := a.requests()[1].SetErrs["ab-2"]; e.Err != ErrInvalidIssuer {
		t.Fatalf("setErrs %+v", a.requests()[1].SetErrs)
	}
	if got := f.entries(t); len(got) != 0 {
		t.Fatalf("stored %+v", got)
	}
}

// TestFutureEvent: an event_timestamp ahead of now (beyond the clock
// skew) would revoke the tokens the user gets until then; it is refused.
func TestFutureEvent(t *testing.T) {
	p := newIdP(t)
	f := withIdP(t, p, "")
	future := time.Now().Add(ClockSkew + time.Hour).Unix()
	wantErr(t, f.push(t, p.set(t, "fut-1", EventAccountDisabled,
		map[string]any{"subject": disabled["subject"], "event_timestamp": future})), ErrInvalidRequest)
	if got := f.entries(t); len(got) != 0 {
		t.Fatalf("stored %+v", got)
	}
	// Within the skew it is taken.
	near := time.Now().Add(time.Minute).Unix()
	if w := f.push(t, p.set(t, "fut-2", EventAccountDisabled, map[string]any{"subject": disabled["subject"], "event_timestamp": near})); w.Code != http.StatusAccepted {
		t.Fatalf("answer %d %s", w.Code, w.Body)
	}
}

// TestLogoutBodyLimit: a logout form over the limit is refused unread.
func TestLogoutBodyLimit(t *testing.T) {
	p := newIdP(t)
	f := withIdP(t, p, "")
	big := "logout_token=" + p.logoutToken(t, "big-1", "sid", "s1") + "&pad=" + strings.Repeat("a", MaxBody)
	req := httptest.NewRequest(http.MethodPost, "/signals", strings.NewReader(big))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	f.r.ServeHTTP(w, req)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"error":"invalid_request"`) {
		t.Fatalf("answer %d %s", w.Code, w.Body)
	}
	if got := f.entries(t); len(got) != 0 {
		t.Fatalf("stored %+v", got)
	}
}

// TestMemoryKeys: no (iss, jti) pair shares another's key, nor a SET a
// logout token's.
func TestMemoryKeys(t *testing.T) {
	seen := map[string]string{}
	for _, c := range [][3]string{{"s", "a", "bc"}, {"s", "ab", "c"}, {"s", "a\x00", "b"}, {"s", "a", "\x00b"}, {"l", "a", "bc"}} {
		k := string(memoryKey(c[0][0], c[1], c[2]))
		if prev, dup := seen[k]; dup {
			t.Fatalf("%q and %q share a key", prev, c)
		}
		seen[k] = fmt.Sprint(c)
	}
}
