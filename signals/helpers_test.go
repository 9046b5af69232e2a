package signals

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtguard/caddy-jwtguard/jwks"
	"github.com/jwtguard/caddy-jwtguard/revocation"
)

const (
	audience = "https://api.example/signals"
	userIss  = "https://idp.example/oauth2/default" // the issuer of the users' access tokens
	lifetime = 24 * time.Hour
)

// idp is an identity provider on 127.0.0.1: a Shared Signals transmitter
// (its SSF configuration and JWK Set) and an OpenID provider (discovery),
// with a poll endpoint whose answers a test scripts.
type idp struct {
	srv  *httptest.Server
	key  *ecdsa.PrivateKey
	kid  string
	jwks atomic.Int64 // JWK Set requests

	mu   sync.Mutex
	poll func(req pollRequest) (int, any) // nil: 200, no SETs
	reqs []pollRequest
	auth []string // the Authorization of each poll request
}

func newIdP(t testing.TB) *idp {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := &idp{key: key, kid: "k1"}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/ssf-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"issuer": p.srv.URL, "jwks_uri": p.srv.URL + "/jwks",
			"delivery_methods_supported": []string{"urn:ietf:rfc:8935", "urn:ietf:rfc:8936"}})
	})
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"issuer": p.srv.URL, "jwks_uri": p.srv.URL + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		p.jwks.Add(1)
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{jwkOf(p.kid, &key.PublicKey)}})
	})
	mux.HandleFunc("/poll", func(w http.ResponseWriter, r *http.Request) {
		var req pollRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || dec.Decode(&req) != nil {
			http.Error(w, "bad poll request", http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		p.reqs = append(p.reqs, req)
		p.auth = append(p.auth, r.Header.Get("Authorization"))
		script := p.poll
		p.mu.Unlock()
		status, body := http.StatusOK, any(map[string]any{"sets": map[string]string{}, "moreAvailable": false})
		if script != nil {
			status, body = script(req)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if s, ok := body.(string); ok {
			io.WriteString(w, s)
			return
		}
		json.NewEncoder(w).Encode(body)
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) iss() string { return p.srv.URL }

func (p *idp) requests() []pollRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]pollRequest(nil), p.reqs...)
}

func jwkOf(kid string, pub *ecdsa.PublicKey) map[string]any {
	raw, err := pub.Bytes()
	if err != nil {
		panic(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	return map[string]any{"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "x": b64(raw[1:33]), "y": b64(raw[33:])}
}

// keySet is the transmitter's keys through SSF discovery, or with oidc
// through OpenID discovery, loaded.
func (p *idp) keySet(t testing.TB, wellKnown string) *jwks.Set {
	t.Helper()
	s, err := jwks.New(jwks.Options{Issuer: p.iss(), WellKnown: wellKnown})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// sign signs claims as this IdP, with header members hdr (a nil value
// removes one).
func (p *idp) sign(t testing.TB, hdr map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	return signWith(t, jwt.SigningMethodES256, p.key, p.kid, hdr, claims)
}

func signWith(t testing.TB, m jwt.SigningMethod, key any, kid string, hdr map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	for k, v := range hdr {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var setHeader = map[string]any{"typ": "secevent+jwt"}

// set is a SET from this IdP with one event.
func (p *idp) set(t testing.TB, jti, event string, payload map[string]any, extra ...any) string {
	t.Helper()
	c := jwt.MapClaims{"iss": p.iss(), "aud": audience, "iat": time.Now().Unix(), "jti": jti,
		"events": map[string]any{event: payload}}
	for i := 0; i < len(extra); i += 2 {
		if extra[i+1] == nil {
			delete(c, extra[i].(string))
		} else {
			c[extra[i].(string)] = extra[i+1]
		}
	}
	return p.sign(t, setHeader, c)
}

// logoutToken is a back-channel logout token from this IdP.
func (p *idp) logoutToken(t testing.TB, jti string, extra ...any) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"iss": p.iss(), "aud": audience, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(), "jti": jti,
		"events": map[string]any{EventBackchannelLogout: map[string]any{}}}
	for i := 0; i < len(extra); i += 2 {
		if extra[i+1] == nil {
			delete(c, extra[i].(string))
		} else {
			c[extra[i].(string)] = extra[i+1]
		}
	}
	return p.sign(t, map[string]any{"typ": "logout+jwt"}, c)
}

// fixture is a Receiver over a store on disk, with what it counted.
type fixture struct {
	r     *Receiver
	store *revocation.Store
	mu    sync.Mutex
	count map[[2]string]int
}

func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	store, err := revocation.Open(t.TempDir(), revocation.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	f := &fixture{store: store, count: map[[2]string]int{}}
	if cfg.Audiences == nil {
		cfg.Audiences = []string{audience}
	}
	if cfg.TokenLifetime == 0 {
		cfg.TokenLifetime = lifetime
	}
	cfg.Store = func() (*revocation.Store, error) { return store, nil }
	cfg.OnResult = func(event, result string) {
		f.mu.Lock()
		f.count[[2]string{event, result}]++
		f.mu.Unlock()
	}
	if f.r, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	return f
}

// withIdP is a fixture with p as transmitter (SSF keys) and as oidc
// provider (OpenID keys).
func withIdP(t testing.TB, p *idp, authorization string) *fixture {
	return newFixture(t, Config{
		Transmitters: []Transmitter{{Issuer: p.iss(), Authorization: authorization, Keys: p.keySet(t, jwks.WellKnownSSF)}},
		Providers:    []Provider{{Issuer: p.iss(), Keys: p.keySet(t, jwks.WellKnownOpenID)}},
	})
}

func (f *fixture) counted(event, result string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count[[2]string{event, result}]
}

// push POSTs a SET as RFC 8935 does and returns the answer.
func (f *fixture) push(t testing.TB, set string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/signals", strings.NewReader(set))
	req.Header.Set("Content-Type", "application/secevent+jwt")
	for i := 0; i < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	f.r.ServeHTTP(w, req)
	return w
}

// logout POSTs a back-channel logout form.
func (f *fixture) logout(t testing.TB, token string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/signals", strings.NewReader(url.Values{"logout_token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	f.r.ServeHTTP(w, req)
	return w
}

func (f *fixture) entries(t testing.TB) []revocation.Entry {
	t.Helper()
	es, _, err := f.store.List("", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// memories counts the jtis remembered.
func (f *fixture) memories(t testing.TB) int {
	t.Helper()
	n := 0
	err := f.store.DB().View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(memoryPrefix)})
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

// wantErr checks a push's 400 answer.
func wantErr(t testing.TB, w *httptest.ResponseRecorder, code string) {
	t.Helper()
	if w.Code != http.StatusBadRequest {
		t.Fatalf("status %d (%s), want 400 %s", w.Code, w.Body, code)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	if body["err"] != code || body["description"] == "" || len(body) != 2 {
		t.Fatalf("body %v, want err %s and a description", body, code)
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
