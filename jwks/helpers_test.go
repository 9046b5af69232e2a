package jwks

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// testKeys are generated once: RSA generation is slow.
type testKeys struct {
	rsa1, rsa2, other *rsa.PrivateKey
	rsaSmall          *rsa.PrivateKey // 1024 bits: refused
	ec256, ec384      *ecdsa.PrivateKey
	ec521             *ecdsa.PrivateKey
	ed, otherEd       ed25519.PrivateKey
}

var (
	keysOnce sync.Once
	tk       testKeys
)

func keys() *testKeys {
	keysOnce.Do(func() {
		must := func(err error) {
			if err != nil {
				panic(err)
			}
		}
		var err error
		for _, p := range []**rsa.PrivateKey{&tk.rsa1, &tk.rsa2, &tk.other} {
			*p, err = rsa.GenerateKey(rand.Reader, 2048)
			must(err)
		}
		tk.rsaSmall, err = rsa.GenerateKey(rand.Reader, 1024)
		must(err)
		tk.ec256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		tk.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		must(err)
		tk.ec521, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		must(err)
		_, tk.ed, err = ed25519.GenerateKey(rand.Reader)
		must(err)
		_, tk.otherEd, err = ed25519.GenerateKey(rand.Reader)
		must(err)
	})
	return &tk
}

// jwkOf renders a public key as a JWK, with extra members appended as
// name, value pairs (a nil value deletes the member).
func jwkOf(kid string, pub any, extra ...any) map[string]any {
	b64 := base64.RawURLEncoding.EncodeToString
	m := map[string]any{}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		m["kty"], m["n"], m["e"] = "RSA", b64(p.N.Bytes()), b64(big.NewInt(int64(p.E)).Bytes())
	case *ecdsa.PublicKey:
		size := (p.Curve.Params().BitSize + 7) / 8
		raw, err := p.Bytes()
		if err != nil {
			panic(err)
		}
		m["kty"], m["crv"] = "EC", p.Curve.Params().Name
		m["x"], m["y"] = b64(raw[1:1+size]), b64(raw[1+size:])
	case ed25519.PublicKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b64(p)
	default:
		panic("unsupported key")
	}
	if kid != "" {
		m["kid"] = kid
	}
	for i := 0; i < len(extra); i += 2 {
		if extra[i+1] == nil {
			delete(m, extra[i].(string))
		} else {
			m[extra[i].(string)] = extra[i+1]
		}
	}
	return m
}

func setJSON(keys ...map[string]any) []byte {
	if keys == nil {
		keys = []map[string]any{}
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		panic(err)
	}
	return b
}

// provider is an identity provider on 127.0.0.1: a JWK Set at /jwks and a
// discovery document at /.well-known/openid-configuration.
type provider struct {
	srv *httptest.Server

	mu        sync.Mutex
	jwks      []byte
	status    int
	header    http.Header
	override  http.HandlerFunc // replaces /jwks when set
	discovery map[string]any   // nil: the default document

	jwksHits      atomic.Int64
	discoveryHits atomic.Int64
}

func newProvider(t testing.TB, jwks []byte) *provider {
	p := &provider{jwks: jwks, status: http.StatusOK}
	mux := http.NewServeMux()
	mux.HandleFunc("/jwks", p.serveJWKS)
	mux.HandleFunc("/jwks2", p.serveJWKS)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		p.discoveryHits.Add(1)
		p.mu.Lock()
		doc := p.discovery
		p.mu.Unlock()
		if doc == nil {
			doc = map[string]any{"issuer": p.srv.URL, "jwks_uri": p.srv.URL + "/jwks"}
		}
		json.NewEncoder(w).Encode(doc)
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *provider) serveJWKS(w http.ResponseWriter, r *http.Request) {
	p.jwksHits.Add(1)
	p.mu.Lock()
	body, status, header, override := p.jwks, p.status, p.header, p.override
	p.mu.Unlock()
	if override != nil {
		override(w, r)
		return
	}
	for k, v := range header {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	w.Write(body)
}

func (p *provider) set(f func(p *provider)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func (p *provider) serve(jwks []byte) { p.set(func(p *provider) { p.jwks = jwks }) }

func (p *provider) url() string { return p.srv.URL + "/jwks" }

// clock is a settable clock, shared by a Set and its verifier.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// recorder collects OnFetch results and OnChange calls.
type recorder struct {
	mu      sync.Mutex
	results []string
	changes int
}

func (r *recorder) fetched(result string) {
	r.mu.Lock()
	r.results = append(r.results, result)
	r.mu.Unlock()
}

func (r *recorder) changed() {
	r.mu.Lock()
	r.changes++
	r.mu.Unlock()
}

func (r *recorder) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.results) == 0 {
		return ""
	}
	return r.results[len(r.results)-1]
}

func (r *recorder) changeCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changes
}

// fixture is a Set with its recorder, logs, clock and a verifier using it.
type fixture struct {
	set  *Set
	rec  *recorder
	logs *observer.ObservedLogs
	clk  *clock
	v    *verifier.Verifier
}

// newFixture makes a Set from opts (Now, Logger, OnFetch and OnChange are
// filled in) and a verifier over it. OnChange flushes the verifier's
// cache, as the handler does.
func newFixture(t testing.TB, opts Options, cfg verifier.Config) *fixture {
	t.Helper()
	f := &fixture{rec: &recorder{}, clk: newClock()}
	core, logs := observer.New(zapcore.DebugLevel)
	f.logs = logs
	opts.Now, opts.Logger, opts.OnFetch = f.clk.Now, zap.New(core), f.rec.fetched
	opts.OnChange = func() {
		f.rec.changed()
		f.v.FlushCache()
	}
	set, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.set = set
	cfg.KeySets = []verifier.KeySet{set}
	cfg.Now = f.clk.Now
	if f.v, err = verifier.New(cfg); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) refresh(t testing.TB) {
	t.Helper()
	if err := f.set.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
}

// claims are valid claims for the fixture's clock.
func (f *fixture) claims(iss string) jwt.MapClaims {
	now := f.clk.Now()
	return jwt.MapClaims{"sub": "user-1", "iss": iss, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

func mint(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// code returns the error code of a Verify error, or "" for success.
func code(err error) verifier.Code {
	if err == nil {
		return ""
	}
	var ve *verifier.Error
	if errors.As(err, &ve) {
		return ve.Code
	}
	return verifier.Code("non-verifier error: " + err.Error())
}

func wantCode(t testing.TB, v *verifier.Verifier, token string, want verifier.Code) {
	t.Helper()
	_, err := v.Verify(token)
	if got := code(err); got != want {
		t.Fatalf("Verify: got %q (%v), want %q", got, err, want)
	}
}

// logged returns the log entries with the given message.
func logged(logs *observer.ObservedLogs, msg string) []observer.LoggedEntry {
	return logs.FilterMessage(msg).All()
}
