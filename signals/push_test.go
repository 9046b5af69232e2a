package signals

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtguard/caddy-jwtguard/jwks"
)

var disabled = map[string]any{"subject": map[string]any{"format": "iss_sub", "iss": userIss, "sub": "alice"}}

// TestPushErrors: every err code of RFC 8935 that the SPEC names, each
// with nothing stored and nothing remembered, and counted under its code.
func TestPushErrors(t *testing.T) {
	p := newIdP(t)
	other := newIdP(t) // a transmitter nobody configured
	const auth = "Bearer s3cret-push-credential"
	f := withIdP(t, p, auth)
	good := func(jti string, extra ...any) string { return p.set(t, jti, EventAccountDisabled, disabled, extra...) }
	now := time.Now().Unix()
	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// The transmitter's public key as an HMAC secret: its JWK's x
	// coordinate, the bytes an attacker can read from the JWK Set.
	pubBytes, _ := p.key.PublicKey.Bytes()

	cases := []struct {
		name    string
		body    string
		headers []string // beside the transmitter's Authorization
		noAuth  bool
		ctype   string
		want    string
	}{
		{name: "not a JWT", body: "hello", want: ErrInvalidRequest},
		{name: "empty body", body: "", want: ErrInvalidRequest},
		{name: "JSON, not a JWT", body: `{"iss":"x"}`, want: ErrInvalidRequest},
		{name: "bad JSON in the claims", body: signRaw(t, p, `{"alg":"ES256","typ":"secevent+jwt","kid":"k1"}`, `{"iss":`), want: ErrInvalidRequest},
		{name: "duplicate claim", body: signRaw(t, p, `{"alg":"ES256","typ":"secevent+jwt","kid":"k1"}`, `{"iss":"`+p.iss()+`","iss":"x"}`), want: ErrInvalidRequest},
		{name: "typ JWT", body: p.sign(t, map[string]any{"typ": "JWT"}, setClaims(p, "e1")), want: ErrInvalidRequest},
		{name: "no typ", body: p.sign(t, map[string]any{"typ": nil}, setClaims(p, "e2")), want: ErrInvalidRequest},
		{name: "a logout token pushed", body: p.logoutToken(t, "lt-1", "sid", "s1"), want: ErrInvalidRequest},
		{name: "a logout token pushed with typ secevent+jwt", body: p.sign(t, setHeader, jwt.MapClaims{"iss": p.iss(), "aud": audience, "iat": now, "exp": now + 60, "jti": "lt-2", "sid": "s1",
			"events": map[string]any{EventBackchannelLogout: map[string]any{}}}), want: ""}, // a valid SET whose event revokes nothing
		{name: "an access token pushed", body: p.sign(t, map[string]any{"typ": "at+jwt"}, jwt.MapClaims{"iss": p.iss(), "aud": audience, "sub": "alice", "exp": now + 60}), want: ErrInvalidRequest},
		{name: "no iat", body: good("e3", "iat", nil), want: ErrInvalidRequest},
		{name: "no jti", body: good("", "jti", nil), want: ErrInvalidRequest},
		{name: "empty jti", body: good(""), want: ErrInvalidRequest},
		{name: "no events", body: good("e4", "events", nil), want: ErrInvalidRequest},
		{name: "events not an object", body: good("e5", "events", "x"), want: ErrInvalidRequest},
		{name: "events a string holding an object", body: good("e5b", "events", `{"`+EventAccountDisabled+`":{}}`), want: ErrInvalidRequest},
		{name: "events empty", body: good("e6", "events", map[string]any{}), want: ErrInvalidRequest},
		{name: "event not an object", body: good("e7", "events", map[string]any{EventAccountDisabled: "alice"}), want: ErrInvalidRequest},
		{name: "subject not an object", body: good("e8", "events", map[string]any{EventAccountDisabled: map[string]any{"subject": "alice"}}), want: ErrInvalidRequest},
		{name: "iss_sub without sub", body: good("e9", "events", map[string]any{EventAccountDisabled: map[string]any{"subject": map[string]any{"format": "iss_sub", "iss": userIss}}}), want: ErrInvalidRequest},
		{name: "sub too long to store", body: good("e10", "events", map[string]any{EventAccountDisabled: map[string]any{"subject": map[string]any{"format": "opaque", "id": strings.Repeat("a", 1025)}}}), want: ErrInvalidRequest},
		{name: "event_timestamp a string", body: good("e11", "events", map[string]any{EventAccountDisabled: map[string]any{"subject": disabled["subject"], "event_timestamp": "now"}}), want: ErrInvalidRequest},
		{name: "jti a number", body: good("e12", "jti", 12), want: ErrInvalidRequest},
		{name: "expired", body: good("e13", "exp", now-int64(ClockSkew/time.Second)-10), want: ErrInvalidRequest},
		{name: "iat in the future", body: good("e14", "iat", now+int64(ClockSkew/time.Second)+60), want: ErrInvalidRequest},
		{name: "Content-Type JSON", body: good("e15"), ctype: "application/json", want: ErrInvalidRequest},
		{name: "Content-Type twice", body: good("e16"), headers: []string{"Content-Type", "application/secevent+jwt"}, want: ErrInvalidRequest},
		{name: "body over the limit", body: strings.Repeat("a", MaxBody+1), want: ErrInvalidRequest},

		{name: "signed by another key", body: signWith(t, jwt.SigningMethodES256, attacker, "k1", setHeader, setClaims(p, "k-1")), want: ErrInvalidKey},
		{name: "an unknown kid", body: signWith(t, jwt.SigningMethodES256, attacker, "k-unknown", setHeader, setClaims(p, "k-2")), want: ErrInvalidKey},
		{name: "alg none", body: unsigned(`{"alg":"none","typ":"secevent+jwt"}`, setClaims(p, "k-3")), want: ErrInvalidKey},
		{name: "HS256 with the public key", body: signWith(t, jwt.SigningMethodHS256, pubBytes, "k1", setHeader, setClaims(p, "k-4")), want: ErrInvalidKey},
		{name: "tampered payload", body: tamper(good("k-5"), setClaims(p, "k-5", "events", map[string]any{EventAccountDisabled: map[string]any{"subject": map[string]any{"format": "opaque", "id": "admin"}}})), want: ErrInvalidKey},

		{name: "an unknown iss", body: other.set(t, "i-1", EventAccountDisabled, disabled), want: ErrInvalidIssuer},
		{name: "no iss", body: good("i-2", "iss", nil), want: ErrInvalidIssuer},

		{name: "no aud", body: good("a-1", "aud", nil), want: ErrInvalidAudience},
		{name: "another aud", body: good("a-2", "aud", "https://other.example"), want: ErrInvalidAudience},
		{name: "a huge aud array without ours", body: good("a-3", "aud", hugeAud(1500)), want: ErrInvalidAudience},

		{name: "no Authorization", body: good("u-1"), noAuth: true, want: ErrAuthenticationFailed},
		{name: "another Authorization", body: good("u-2"), noAuth: true, headers: []string{"Authorization", "Bearer s3cret-push-credentiaX"}, want: ErrAuthenticationFailed},
		{name: "Authorization with a prefix of it", body: good("u-3"), noAuth: true, headers: []string{"Authorization", "Bearer s3cret"}, want: ErrAuthenticationFailed},
		{name: "Authorization with more", body: good("u-4"), noAuth: true, headers: []string{"Authorization", auth + " "}, want: ErrAuthenticationFailed},
		{name: "Authorization in another case", body: good("u-5"), noAuth: true, headers: []string{"Authorization", strings.ToLower(auth)}, want: ErrAuthenticationFailed},
		{name: "Authorization twice", body: good("u-6"), headers: []string{"Authorization", auth}, want: ErrAuthenticationFailed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/signals", strings.NewReader(c.body))
			ct := c.ctype
			if ct == "" {
				ct = "application/secevent+jwt"
			}
			req.Header.Set("Content-Type", ct)
			if !c.noAuth {
				req.Header.Set("Authorization", auth)
			}
			for i := 0; i < len(c.headers); i += 2 {
				req.Header.Add(c.headers[i], c.headers[i+1])
			}
			before, stored, remembered := countAll(f), len(f.entries(t)), f.memories(t)
			w := httptest.NewRecorder()
			f.r.ServeHTTP(w, req)
			if c.want == "" {
				if w.Code != http.StatusAccepted {
					t.Fatalf("answer %d %s, want 202", w.Code, w.Body)
				}
				return
			}
			wantErr(t, w, c.want)
			if got := f.entries(t); len(got) != stored {
				t.Fatalf("stored %+v", got)
			}
			if n := f.memories(t); n != remembered {
				t.Fatalf("%d jtis remembered, %d before", n, remembered)
			}
			if after := countAll(f); after[c.want] != before[c.want]+1 {
				t.Fatalf("counts before %v, after %v: %s not counted once", before, after, c.want)
			}
		})
	}
}

// countAll sums the counts per result.
func countAll(f *fixture) map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, n := range f.count {
		out[k[1]] += n
	}
	return out
}

func setClaims(p *idp, jti string, kv ...any) jwt.MapClaims {
	c := jwt.MapClaims{"iss": p.iss(), "aud": audience, "iat": time.Now().Unix(), "jti": jti,
		"events": map[string]any{EventAccountDisabled: disabled}}
	for i := 0; i < len(kv); i += 2 {
		c[kv[i].(string)] = kv[i+1]
	}
	return c
}

func hugeAud(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("a%d", i)
	}
	return out
}

// signRaw signs a header and payload written by hand.
func signRaw(t testing.TB, p *idp, header, payload string) string {
	t.Helper()
	input := b64(header) + "." + b64(payload)
	sig, err := jwt.SigningMethodES256.Sign(input, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(string(sig))
}

func unsigned(header string, claims jwt.MapClaims) string {
	b, _ := json.Marshal(claims)
	return b64(header) + "." + b64(string(b)) + "."
}

// tamper puts other's payload under tok's signature.
func tamper(tok string, claims jwt.MapClaims) string {
	b, _ := json.Marshal(claims)
	parts := strings.Split(tok, ".")
	return parts[0] + "." + b64(string(b)) + "." + parts[2]
}

// TestPushAnswers: 202 with no body once durable; another method is 405.
func TestPushAnswers(t *testing.T) {
	p := newIdP(t)
	f := withIdP(t, p, "")
	w := f.push(t, p.set(t, "ok-1", EventAccountDisabled, disabled))
	if w.Code != http.StatusAccepted || w.Body.Len() != 0 {
		t.Fatalf("answer %d %q", w.Code, w.Body)
	}
	if got := f.entries(t); len(got) != 1 {
		t.Fatalf("stored %+v", got)
	}
	// A transmitter without authorization is authenticated by the
	// signature alone, whatever Authorization comes along.
	if w := f.push(t, p.set(t, "ok-2", EventAccountPurged, disabled), "Authorization", "Bearer whatever"); w.Code != http.StatusAccepted {
		t.Fatalf("answer %d %s", w.Code, w.Body)
	}
	req := httptest.NewRequest(http.MethodGet, "/signals", nil)
	rec := httptest.NewRecorder()
	f.r.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "POST" {
		t.Fatalf("GET: %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

// TestRedelivery: a SET applied once is answered 202 again and changes
// nothing, even after its entry was deleted (a replay cannot revoke
// again what an administrator un-revoked); counted as ignored.
func TestRedelivery(t *testing.T) {
	p := newIdP(t)
	f := withIdP(t, p, "")
	set := p.set(t, "again-1", EventCredentialCompromise, disabled)
	if w := f.push(t, set); w.Code != http.StatusAccepted {
		t.Fatalf("first: %d %s", w.Code, w.Body)
	}
	first := f.entries(t)
	if len(first) != 1 {
		t.Fatalf("stored %+v", first)
	}
	if w := f.push(t, set); w.Code != http.StatusAccepted || w.Body.Len() != 0 {
		t.Fatalf("redelivery: %d %q", w.Code, w.Body)
	}
	again := f.entries(t)
	if len(again) != 1 || !again[0].CreatedAt.Equal(first[0].CreatedAt) || *again[0].ExpiresAt != *first[0].ExpiresAt {
		t.Fatalf("after redelivery %+v, before %+v", again, first)
	}
	if _, ok, err := f.store.Delete(first[0].ID); !ok || err != nil {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if w := f.push(t, set); w.Code != http.StatusAccepted {
		t.Fatalf("replay: %d %s", w.Code, w.Body)
	}
	if got := f.entries(t); len(got) != 0 {
		t.Fatalf("a replay stored %+v again", got)
	}
	if f.counted("credential-compromise", ResultApplied) != 1 || f.counted("credential-compromise", ResultIgnored) != 2 {
		t.Fatalf("counts %v", f.count)
	}
	// The same jti from another transmitter is another SET.
	q := newIdP(t)
	g := newFixture(t, Config{Transmitters: []Transmitter{
		{Issuer: p.iss(), Keys: p.keySet(t, jwks.WellKnownSSF)},
		{Issuer: q.iss(), Keys: q.keySet(t, jwks.WellKnownSSF)},
	}})
	g.push(t, set)
	if w := g.push(t, q.set(t, "again-1", EventAccountDisabled, map[string]any{"subject": map[string]any{"format": "opaque", "id": "bob"}})); w.Code != http.StatusAccepted {
		t.Fatalf("q: %d %s", w.Code, w.Body)
	}
	if got := g.entries(t); len(got) != 2 {
		t.Fatalf("stored %+v", got)
	}
}

// TestUnknownEventIgnored: a valid SET whose only event jwtguard does not
// know is 202, stores nothing and counts as ignored under "other".
func TestUnknownEventIgnored(t *testing.T) {
	p := newIdP(t)
	f := withIdP(t, p, "")
	w := f.push(t, p.set(t, "unk-1", "https://schemas.example.com/event-type/coffee-spilled", disabled))
	if w.Code != http.StatusAccepted || w.Body.Len() != 0 {
		t.Fatalf("answer %d %q", w.Code, w.Body)
	}
	if got := f.entries(t); len(got) != 0 {
		t.Fatalf("stored %+v", got)
	}
	if f.counted("other", ResultIgnored) != 1 {
		t.Fatalf("counts %v", f.count)
	}
}

// TestStoreUnavailable: a valid SET the store cannot take is 503, for the
// transmitter to send again, and is not remembered.
func TestStoreUnavailable(t *testing.T) {
	p := newIdP(t)
	f := withIdP(t, p, "")
	set := p.set(t, "closed-1", EventAccountDisabled, disabled)
	f.store.Close()
	w := f.push(t, set)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("answer %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	if f.counted("account-disabled", ResultStoreUnavailable) != 1 {
		t.Fatalf("counts %v", f.count)
	}
}

// TestRefusedEventCountedByType: a signed SET refused for what its event
// holds (here a subject that is not an object) counts under its event
// type, like a SET refused before verification does, not as "other".
func TestRefusedEventCountedByType(t *testing.T) {
	p := newIdP(t)
	f := withIdP(t, p, "")
	wantErr(t, f.push(t, p.set(t, "broken-1", EventAccountDisabled, map[string]any{"subject": "not an object"})), ErrInvalidRequest)
	if f.counted("account-disabled", ErrInvalidRequest) != 1 {
		t.Fatalf("counts %v", f.count)
	}
	if got := f.entries(t); len(got) != 0 {
		t.Fatalf("stored %+v", got)
	}
}
