package signals

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
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

// TestEmbeddedKeysIgnored: keys come only from configuration (SPEC,
// "Verification rules": jku, x5u, jwk and x5c are ignored). A SET or
// logout token signed with an attacker's key, which its header carries
// (jwk, x5c) or points to (jku, x5u), is refused and stores nothing, and
// nothing is fetched from the URLs it names; the transmitter's own token
// with the same header is taken.
func TestEmbeddedKeysIgnored(t *testing.T) {
	p := newIdP(t)
	f := withIdP(t, p, "")
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var fetched atomic.Int64
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{jwkOf("evil", &attacker.PublicKey)}})
	}))
	defer evil.Close()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: p.iss()},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &attacker.PublicKey, attacker)
	if err != nil {
		t.Fatal(err)
	}

	headers := map[string]any{
		"jwk": jwkOf("evil", &attacker.PublicKey),
		"jku": evil.URL + "/jwks",
		"x5u": evil.URL + "/cert.pem",
		"x5c": []string{base64.StdEncoding.EncodeToString(der)},
	}
	n := 0
	for name, value := range headers {
		for _, kid := range []string{"evil", p.kid} {
			n++
			now := time.Now().Unix()
			set := signWith(t, jwt.SigningMethodES256, attacker, kid, map[string]any{"typ": "secevent+jwt", name: value},
				setClaims(p, fmt.Sprintf("emb-set-%d", n)))
			wantErr(t, f.push(t, set), ErrInvalidKey)
			logout := signWith(t, jwt.SigningMethodES256, attacker, kid, map[string]any{"typ": "logout+jwt", name: value},
				jwt.MapClaims{"iss": p.iss(), "aud": audience, "iat": now, "exp": now + 120, "jti": fmt.Sprintf("emb-lo-%d", n), "sid": "s1",
					"events": map[string]any{EventBackchannelLogout: map[string]any{}}})
			if w := f.logout(t, logout); w.Code != http.StatusBadRequest {
				t.Fatalf("a logout token with %s, kid %s, signed by the attacker: %d %s", name, kid, w.Code, w.Body)
			}
		}
	}
	if got := f.entries(t); len(got) != 0 {
		t.Fatalf("stored %+v", got)
	}
	if f.memories(t) != 0 {
		t.Fatal("remembered a refused token")
	}
	if k := fetched.Load(); k != 0 {
		t.Fatalf("fetched %d times from a URL a token named", k)
	}

	// The header is ignored, not refused: the transmitter's own SET
	// carrying it is applied.
	for name, value := range headers {
		n++
		set := p.sign(t, map[string]any{"typ": "secevent+jwt", name: value}, setClaims(p, fmt.Sprintf("emb-own-%d", n)))
		if w := f.push(t, set); w.Code != http.StatusAccepted {
			t.Fatalf("the transmitter's SET with %s: %d %s", name, w.Code, w.Body)
		}
	}
}
