package jwks

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtguard/caddy-jwtguard/verifier"
)

func TestSSFDiscoveryURL(t *testing.T) {
	for issuer, want := range map[string]string{
		"https://tr.example.com":           "https://tr.example.com/.well-known/ssf-configuration",
		"https://tr.example.com/":          "https://tr.example.com/.well-known/ssf-configuration",
		"https://tr.example.com/issuer1":   "https://tr.example.com/.well-known/ssf-configuration/issuer1",
		"https://tr.example.com/issuer1/":  "https://tr.example.com/.well-known/ssf-configuration/issuer1",
		"https://tr.example.com:8443/a/b":  "https://tr.example.com:8443/.well-known/ssf-configuration/a/b",
		"https://tr.example.com/t%2Fenant": "https://tr.example.com/.well-known/ssf-configuration/t%2Fenant",
		"http://127.0.0.1:9/x":             "http://127.0.0.1:9/.well-known/ssf-configuration/x",
	} {
		s, err := New(Options{Issuer: issuer, WellKnown: WellKnownSSF})
		if err != nil {
			t.Fatalf("%s: %v", issuer, err)
		}
		if s.discoveryURL != want {
			t.Errorf("%s: discovery at %q, want %q", issuer, s.discoveryURL, want)
		}
	}
	for _, opts := range []Options{
		{URL: "https://tr.example.com/jwks", WellKnown: WellKnownSSF},
		{Issuer: "https://tr.example.com", WellKnown: "sse-configuration"},
		{Issuer: "https://tr.example.com?x=1", WellKnown: WellKnownSSF},
	} {
		if _, err := New(opts); err == nil {
			t.Errorf("New accepted %+v", opts)
		}
	}
}

// TestSSFKeys reads a transmitter's keys through its SSF configuration,
// at the well-known path for an issuer with a path, and binds them to that
// issuer; a configuration naming another issuer is refused.
func TestSSFKeys(t *testing.T) {
	k := keys()
	var srv *httptest.Server
	var docIssuer atomic.Value
	var openidHits atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/ssf-configuration/tenant1", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": docIssuer.Load(), "jwks_uri": srv.URL + "/tenant1/jwks",
			"delivery_methods_supported": []string{"urn:ietf:rfc:8935"},
		})
	})
	mux.HandleFunc("/tenant1/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		openidHits.Add(1)
		http.NotFound(w, r)
	})
	mux.HandleFunc("/tenant1/jwks", func(w http.ResponseWriter, r *http.Request) {
		w.Write(setJSON(jwkOf("s1", &k.ec256.PublicKey)))
	})
	srv = httptest.NewServer(mux)
	defer srv.Close()
	issuer := srv.URL + "/tenant1"
	docIssuer.Store(issuer)

	f := newFixture(t, Options{Issuer: issuer, WellKnown: WellKnownSSF}, verifier.Config{})
	f.refresh(t)
	wantCode(t, f.v, mint(t, jwt.SigningMethodES256, k.ec256, "s1", f.claims(issuer)), "")
	// The keys are the transmitter's: another issuer's token does not
	// verify with them.
	wantCode(t, f.v, mint(t, jwt.SigningMethodES256, k.ec256, "s1", f.claims(srv.URL)), verifier.CodeSignature)
	if openidHits.Load() != 0 {
		t.Fatal("an SSF source read the OpenID configuration")
	}

	docIssuer.Store(srv.URL) // the host, not the issuer configured
	if err := f.set.Refresh(context.Background()); err == nil || f.rec.last() != ResultIssuer {
		t.Fatalf("a configuration naming another issuer: %v, result %q", err, f.rec.last())
	}
	// The last good keys stay.
	wantCode(t, f.v, mint(t, jwt.SigningMethodES256, k.ec256, "s1", f.claims(issuer)), "")
}

// TestSeedSSFApart: an OpenID set and an SSF set of the same issuer read
// different documents and do not seed each other.
func TestSeedSSFApart(t *testing.T) {
	k := keys()
	p := newProvider(t, setJSON(jwkOf("k1", &k.rsa1.PublicKey)))
	oidc, err := New(Options{Issuer: p.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if err := oidc.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	ssf, err := New(Options{Issuer: p.srv.URL, WellKnown: WellKnownSSF})
	if err != nil {
		t.Fatal(err)
	}
	if ssf.Seed(oidc) {
		t.Fatal("an SSF set took an OpenID set's keys")
	}
	again, _ := New(Options{Issuer: p.srv.URL})
	if !again.Seed(oidc) {
		t.Fatal("an OpenID set did not take its predecessor's keys")
	}
}
