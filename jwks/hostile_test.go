package jwks

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// TestHostileAnswers loads good keys, then has the provider answer badly:
// each answer is refused with a log line and its result, and the good keys
// stay.
func TestHostileAnswers(t *testing.T) {
	k := keys()
	good := setJSON(jwkOf("k1", &k.rsa1.PublicKey))
	huge := append(append([]byte(`{"keys":[`), bytes.Repeat([]byte(`{"kty":"oct","k":"AAAA"},`), 50000)...), `{}]}`...)
	type setup func(p *provider)
	jwksHandler := func(h http.HandlerFunc) setup {
		return func(p *provider) { p.override = h }
	}
	discovery := func(doc map[string]any) setup {
		return func(p *provider) { p.discovery = doc }
	}
	for _, c := range []struct {
		name   string
		oidc   bool
		client *http.Client
		setup  setup
		want   string
	}{
		{name: "500", want: ResultHTTP, setup: func(p *provider) { p.status = 500 }},
		{name: "404", want: ResultHTTP, setup: func(p *provider) { p.status = 404 }},
		{name: "204", want: ResultHTTP, setup: func(p *provider) { p.status = 204; p.jwks = nil }},
		{name: "huge body", want: ResultBody, setup: jwksHandler(func(w http.ResponseWriter, r *http.Request) {
			// no Content-Length: the limit is found while reading
			w.(http.Flusher).Flush()
			w.Write(huge)
		})},
		{name: "huge Content-Length", want: ResultBody, setup: jwksHandler(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(huge)))
			w.Write(huge)
		})},
		{name: "truncated body", want: ResultBody, setup: jwksHandler(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			w.Write(good[:len(good)/2])
		})},
		{name: "slow drip", want: ResultTimeout, client: &http.Client{Timeout: 300 * time.Millisecond},
			setup: jwksHandler(func(w http.ResponseWriter, r *http.Request) {
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				for {
					if _, err := w.Write([]byte(" ")); err != nil {
						return
					}
					w.(http.Flusher).Flush()
					select {
					case <-r.Context().Done():
						return
					case <-tick.C:
					}
				}
			})},
		{name: "slow headers", want: ResultTimeout, client: &http.Client{Timeout: 300 * time.Millisecond},
			setup: jwksHandler(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })},
		{name: "malformed JSON", want: ResultJSON, setup: func(p *provider) { p.jwks = []byte(`{"keys":[{"kty":"RSA",`) }},
		{name: "not a JWK Set", want: ResultJSON, setup: func(p *provider) { p.jwks = []byte(`{"jwks":[]}`) }},
		{name: "array", want: ResultJSON, setup: func(p *provider) { p.jwks = []byte(`[]`) }},
		{name: "null", want: ResultJSON, setup: func(p *provider) { p.jwks = []byte(`null`) }},
		{name: "trailing garbage", want: ResultJSON, setup: func(p *provider) { p.jwks = append(good, "x"...) }},
		{name: "HTML", want: ResultJSON, setup: func(p *provider) { p.jwks = []byte(`<html>maintenance</html>`) }},
		{name: "no keys", want: ResultNoKeys, setup: func(p *provider) { p.jwks = []byte(`{"keys":[]}`) }},
		{name: "only oct and enc keys", want: ResultNoKeys, setup: func(p *provider) {
			p.jwks = setJSON(
				map[string]any{"kty": "oct", "kid": "s1", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
				jwkOf("k1", &k.rsa1.PublicKey, "use", "enc", "alg", "RSA-OAEP"),
			)
		}},
		{name: "only invalid keys", want: ResultNoKeys, setup: func(p *provider) {
			p.jwks = setJSON(jwkOf("small", &k.rsaSmall.PublicKey), map[string]any{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"})
		}},
		{name: "redirect loop", want: ResultRedirect, setup: jwksHandler(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/jwks", http.StatusFound)
		})},
		{name: "wrong discovery issuer", oidc: true, want: ResultIssuer, setup: func(p *provider) {
			discovery(map[string]any{"issuer": "https://evil.example", "jwks_uri": p.srv.URL + "/jwks"})(p)
		}},
		{name: "discovery issuer with a trailing slash", oidc: true, want: ResultIssuer, setup: func(p *provider) {
			discovery(map[string]any{"issuer": p.srv.URL + "/", "jwks_uri": p.srv.URL + "/jwks"})(p)
		}},
		{name: "discovery without issuer", oidc: true, want: ResultIssuer, setup: func(p *provider) {
			discovery(map[string]any{"jwks_uri": p.srv.URL + "/jwks"})(p)
		}},
		{name: "relative jwks_uri", oidc: true, want: ResultDiscovery, setup: func(p *provider) {
			discovery(map[string]any{"issuer": p.srv.URL, "jwks_uri": "/jwks"})(p)
		}},
		{name: "file jwks_uri", oidc: true, want: ResultDiscovery, setup: func(p *provider) {
			discovery(map[string]any{"issuer": p.srv.URL, "jwks_uri": "file:///etc/passwd"})(p)
		}},
		{name: "no jwks_uri", oidc: true, want: ResultDiscovery, setup: func(p *provider) {
			discovery(map[string]any{"issuer": p.srv.URL})(p)
		}},
		{name: "malformed discovery", oidc: true, want: ResultJSON, setup: func(p *provider) {
			discovery(map[string]any{"issuer": []int{1}})(p)
		}},
		{name: "bad JWK Set after discovery", oidc: true, want: ResultNoKeys, setup: func(p *provider) { p.jwks = []byte(`{"keys":[]}`) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newProvider(t, good)
			opts := Options{URL: p.url(), Client: c.client}
			claimIss := iss
			if c.oidc {
				opts = Options{Issuer: p.srv.URL, Client: c.client}
				claimIss = p.srv.URL
			}
			f := newFixture(t, opts, verifier.Config{CacheEntries: -1})
			f.refresh(t)
			tok := mint(t, jwt.SigningMethodRS256, k.rsa1, "k1", f.claims(claimIss))
			wantCode(t, f.v, tok, "")
			hits := p.jwksHits.Load()

			p.set(c.setup)
			err := f.set.Refresh(context.Background())
			if err == nil {
				t.Fatal("Refresh accepted the answer")
			}
			if f.rec.last() != c.want {
				t.Fatalf("result %q (%v), want %q", f.rec.last(), err, c.want)
			}
			lines := logged(f.logs, "jwks fetch failed")
			if len(lines) != 1 {
				t.Fatalf("%d \"jwks fetch failed\" lines", len(lines))
			}
			if fields := lines[0].ContextMap(); fields["result"] != c.want || fields["reason"] == "" {
				t.Fatalf("logged %v", fields)
			}
			wantCode(t, f.v, tok, "")
			if f.rec.changeCount() != 0 {
				t.Fatal("OnChange called")
			}
			if c.name == "redirect loop" {
				if n := p.jwksHits.Load() - hits; n != MaxRedirects+1 {
					t.Fatalf("redirect loop: %d requests, want %d", n, MaxRedirects+1)
				}
			}
		})
	}
}

func TestMaxBytes(t *testing.T) {
	k := keys()
	good := setJSON(jwkOf("k1", &k.rsa1.PublicKey))
	p := newProvider(t, good)
	f := newFixture(t, Options{URL: p.url(), MaxBytes: int64(len(good))}, verifier.Config{})
	f.refresh(t) // exactly at the limit
	p.serve(append(good, ' '))
	if err := f.set.Refresh(context.Background()); err == nil || f.rec.last() != ResultBody {
		t.Fatalf("a byte over the limit: %v, %q", err, f.rec.last())
	}
}

// TestHTTPSIssuerNeedsHTTPSKeys: an https issuer whose discovery document
// points at plain http would let anyone on the path swap the keys.
func TestHTTPSIssuerNeedsHTTPSKeys(t *testing.T) {
	k := keys()
	plain := newProvider(t, setJSON(jwkOf("k1", &k.rsa1.PublicKey)))
	var tlsURL string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/openid-configuration"):
			w.Write([]byte(`{"issuer":"` + tlsURL + `","jwks_uri":"` + plain.url() + `"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	tlsURL = srv.URL
	f := newFixture(t, Options{Issuer: srv.URL, Client: srv.Client()}, verifier.Config{})
	if err := f.set.Refresh(context.Background()); err == nil || f.rec.last() != ResultDiscovery {
		t.Fatalf("http jwks_uri for an https issuer: %v, %q", err, f.rec.last())
	}
	if plain.jwksHits.Load() != 0 {
		t.Fatal("fetched keys over http")
	}
}

// TestCanceledFetchNotReported: a fetch cut short by shutdown is not the
// provider's fault and is neither logged nor counted.
func TestCanceledFetchNotReported(t *testing.T) {
	k := keys()
	p := newProvider(t, setJSON(jwkOf("k1", &k.rsa1.PublicKey)))
	f := newFixture(t, Options{URL: p.url()}, verifier.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.set.Refresh(ctx); err == nil {
		t.Fatal("Refresh with a canceled context succeeded")
	}
	if f.rec.last() != "" || len(logged(f.logs, "jwks fetch failed")) != 0 {
		t.Fatal("canceled fetch reported")
	}
}
