package jwks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtguard/caddy-jwtguard/verifier"
)

const iss = "https://idp.example"

func randomKID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func TestRotation(t *testing.T) {
	k := keys()
	p := newProvider(t, setJSON(jwkOf("k1", &k.rsa1.PublicKey)))
	// The verifier's cache is on: OnChange must flush it for k1's
	// removal to take effect on a token already seen.
	f := newFixture(t, Options{URL: p.url()}, verifier.Config{})
	f.refresh(t)
	if f.rec.changeCount() != 0 {
		t.Fatal("OnChange called on the first load")
	}
	tok1 := mint(t, jwt.SigningMethodRS256, k.rsa1, "k1", f.claims(iss))
	wantCode(t, f.v, tok1, "")

	p.serve(setJSON(jwkOf("k2", &k.rsa2.PublicKey)))
	f.refresh(t)
	if f.rec.last() != ResultOK || f.rec.changeCount() != 1 {
		t.Fatalf("after rotation: result %q, %d changes", f.rec.last(), f.rec.changeCount())
	}
	tok2 := mint(t, jwt.SigningMethodRS256, k.rsa2, "k2", f.claims(iss))
	wantCode(t, f.v, tok2, "")
	wantCode(t, f.v, tok1, verifier.CodeSignature)

	changes := logged(f.logs, "jwks keys changed")
	if len(changes) != 2 {
		t.Fatalf("%d \"jwks keys changed\" lines, want 2", len(changes))
	}
	fields := changes[1].ContextMap()
	if !slices.Equal(fields["added"].([]any), []any{"k2"}) || !slices.Equal(fields["removed"].([]any), []any{"k1"}) {
		t.Fatalf("change logged as %v", fields)
	}
}

func TestUnknownKIDFlood(t *testing.T) {
	k := keys()
	p := newProvider(t, setJSON(jwkOf("k1", &k.rsa1.PublicKey), jwkOf("e1", &k.ec256.PublicKey)))
	f := newFixture(t, Options{URL: p.url()}, verifier.Config{CacheEntries: -1})
	f.refresh(t)

	const n, workers = 1000, 8
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = mint(t, jwt.SigningMethodES256, k.ec256, randomKID(), f.claims(iss))
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if _, err := f.v.Verify(tokens[i]); code(err) != verifier.CodeSignature {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("unknown kid: got %v, want signature", err)
	}
	if fetches := p.jwksHits.Load() - 1; fetches < 1 || fetches > 2 {
		t.Fatalf("%d unknown kids caused %d fetches, want 1 or 2", n, fetches)
	}

	before := p.jwksHits.Load()
	f.clk.Advance(UnknownKIDInterval + time.Second)
	for range 3 {
		wantCode(t, f.v, mint(t, jwt.SigningMethodES256, k.ec256, randomKID(), f.claims(iss)), verifier.CodeSignature)
	}
	if got := p.jwksHits.Load() - before; got != 1 {
		t.Fatalf("31 s later, unknown kids caused %d fetches, want 1", got)
	}
}

func TestNewKIDPickedUpAtOnce(t *testing.T) {
	k := keys()
	p := newProvider(t, setJSON(jwkOf("k1", &k.rsa1.PublicKey)))
	f := newFixture(t, Options{URL: p.url()}, verifier.Config{})
	f.refresh(t)
	p.serve(setJSON(jwkOf("k1", &k.rsa1.PublicKey), jwkOf("k2", &k.rsa2.PublicKey)))

	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa2, "k2", f.claims(iss)), "")
	if hits := p.jwksHits.Load(); hits != 2 {
		t.Fatalf("%d fetches, want 2", hits)
	}
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa1, "k1", f.claims(iss)), "")
}

func TestProviderDownAtStart(t *testing.T) {
	k := keys()
	p := newProvider(t, setJSON(jwkOf("k1", &k.rsa1.PublicKey)))
	p.set(func(p *provider) { p.status = http.StatusInternalServerError })
	f := newFixture(t, Options{URL: p.url()}, verifier.Config{})
	tok := mint(t, jwt.SigningMethodRS256, k.rsa1, "k1", f.claims(iss))

	if err := f.set.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh succeeded against a 500")
	}
	if f.rec.last() != ResultHTTP {
		t.Fatalf("result %q, want %q", f.rec.last(), ResultHTTP)
	}
	wantCode(t, f.v, tok, verifier.CodeKeysUnavailable)
	// A kid-less token needs the keys too.
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa1, "", f.claims(iss)), verifier.CodeKeysUnavailable)
	if hits := p.jwksHits.Load(); hits != 1 {
		t.Fatalf("requests before the first load fetched: %d hits", hits)
	}

	p.set(func(p *provider) { p.status = http.StatusOK })
	f.refresh(t)
	wantCode(t, f.v, tok, "")
}

func TestProviderUnreachableAtStart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	f := newFixture(t, Options{URL: "http://" + addr + "/jwks"}, verifier.Config{})
	if err := f.set.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh succeeded against a closed port")
	}
	if f.rec.last() != ResultHTTP {
		t.Fatalf("result %q, want %q", f.rec.last(), ResultHTTP)
	}
	if len(logged(f.logs, "jwks fetch failed")) != 1 {
		t.Fatal("no \"jwks fetch failed\" log line")
	}
	k := keys()
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa1, "k1", f.claims(iss)), verifier.CodeKeysUnavailable)
}

// TestStartBackoff drives the background loop through a provider that is
// down at start: retries back off 1 s, 2 s, 4 s; once up, the keys load
// and the next refresh is a full interval (shortened by max-age) away.
func TestStartBackoff(t *testing.T) {
	k := keys()
	p := newProvider(t, setJSON(jwkOf("k1", &k.rsa1.PublicKey)))
	p.set(func(p *provider) { p.status = http.StatusServiceUnavailable })
	f := newFixture(t, Options{URL: p.url()}, verifier.Config{})
	waits, release := make(chan time.Duration), make(chan struct{})
	f.set.sleep = func(ctx context.Context, d time.Duration) bool {
		waits <- d
		select {
		case <-release:
			return true
		case <-ctx.Done():
			return false
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		<-f.set.loopDone
	}()
	f.set.Start(ctx)
	f.set.Start(ctx) // a second Start does nothing

	tok := mint(t, jwt.SigningMethodRS256, k.rsa1, "k1", f.claims(iss))
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
		if got := <-waits; got != want {
			t.Fatalf("backoff %v, want %v", got, want)
		}
		wantCode(t, f.v, tok, verifier.CodeKeysUnavailable)
		if want == 8*time.Second {
			p.set(func(p *provider) {
				p.status = http.StatusOK
				p.header = http.Header{"Cache-Control": {"public, max-age=300"}}
			})
		}
		release <- struct{}{}
	}
	if got := <-waits; got != 5*time.Minute {
		t.Fatalf("after a success with max-age=300, waits %v, want 5m", got)
	}
	wantCode(t, f.v, tok, "")
	if hits := p.jwksHits.Load(); hits != 5 {
		t.Fatalf("%d fetches, want 5", hits)
	}
}

func TestInterval(t *testing.T) {
	for _, c := range []struct {
		refresh time.Duration
		cc      string
		want    time.Duration
	}{
		{0, "", DefaultRefresh},
		{0, "max-age=300", 5 * time.Minute},
		{0, "public, max-age=5", MinRefresh},      // floor
		{0, "max-age=86400", DefaultRefresh},      // Refresh caps it
		{0, "no-cache, no-store", DefaultRefresh}, // ignored
		{0, "max-age=abc", DefaultRefresh},
		{30 * time.Second, "max-age=600", 30 * time.Second}, // the operator's shorter interval stands
		{time.Hour, `MAX-AGE="7200"`, time.Hour},
	} {
		set, err := New(Options{URL: "https://idp.example/jwks", Refresh: c.refresh})
		if err != nil {
			t.Fatal(err)
		}
		set.maxAge = maxAge(http.Header{"Cache-Control": {c.cc}})
		if got := set.interval(); got != c.want {
			t.Errorf("Refresh %v, Cache-Control %q: interval %v, want %v", c.refresh, c.cc, got, c.want)
		}
	}
}

func TestProviderDownLater(t *testing.T) {
	k := keys()
	p := newProvider(t, setJSON(jwkOf("k1", &k.rsa1.PublicKey)))
	f := newFixture(t, Options{URL: p.url()}, verifier.Config{CacheEntries: -1})
	f.refresh(t)
	tok := mint(t, jwt.SigningMethodRS256, k.rsa1, "k1", f.claims(iss))

	p.set(func(p *provider) { p.status = http.StatusBadGateway })
	if err := f.set.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh succeeded against a 502")
	}
	wantCode(t, f.v, tok, "")

	p.srv.Close() // now unreachable
	if err := f.set.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh succeeded against a closed server")
	}
	wantCode(t, f.v, tok, "")
	// An unknown kid still fails as a signature, not as missing keys.
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa1, "zz", f.claims(iss)), verifier.CodeSignature)
}

func TestUnchanged(t *testing.T) {
	k := keys()
	a, b := jwkOf("k1", &k.rsa1.PublicKey), jwkOf("e1", &k.ec256.PublicKey)
	p := newProvider(t, setJSON(a, b))
	f := newFixture(t, Options{URL: p.url()}, verifier.Config{})
	f.refresh(t)
	before, _ := f.set.Keys("k1", "")

	f.refresh(t)
	if f.rec.last() != ResultUnchanged {
		t.Fatalf("same document: result %q", f.rec.last())
	}
	p.serve(setJSON(b, a)) // re-ordered: the same keys
	f.refresh(t)
	if f.rec.last() != ResultUnchanged {
		t.Fatalf("re-ordered document: result %q", f.rec.last())
	}
	after, _ := f.set.Keys("k1", "")
	if f.rec.changeCount() != 0 || after[0] != before[0] {
		t.Fatal("re-sent keys were treated as a change")
	}
	// The same key under a new alg binding is a change.
	p.serve(setJSON(jwkOf("k1", &k.rsa1.PublicKey, "alg", "RS256"), b))
	f.refresh(t)
	if f.rec.last() != ResultOK || f.rec.changeCount() != 1 {
		t.Fatalf("alg added: result %q, %d changes", f.rec.last(), f.rec.changeCount())
	}
}

func TestSecondProvider(t *testing.T) {
	k := keys()
	pa := newProvider(t, setJSON(jwkOf("a1", &k.rsa1.PublicKey)))
	pb := newProvider(t, setJSON(jwkOf("b1", &k.other.PublicKey)))
	f := newFixture(t, Options{Issuer: pa.srv.URL}, verifier.Config{CacheEntries: -1})
	f.refresh(t)
	issA, issB := pa.srv.URL, pb.srv.URL

	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa1, "a1", f.claims(issA)), "")
	// B's token, with B's kid or A's kid, is not verified by A's keys.
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.other, "b1", f.claims(issB)), verifier.CodeSignature)
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.other, "a1", f.claims(issB)), verifier.CodeSignature)
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.other, "a1", f.claims(issA)), verifier.CodeSignature)
	// A token signed by A's key but naming another issuer: A's keys are
	// bound to A's issuer.
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa1, "a1", f.claims(issB)), verifier.CodeSignature)
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa1, "", f.claims("https://evil.example")), verifier.CodeSignature)

	// Both providers on one route: each token verifies with its own
	// provider's keys only.
	setB, err := New(Options{Issuer: issB})
	if err != nil {
		t.Fatal(err)
	}
	if err := setB.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, err := verifier.New(verifier.Config{KeySets: []verifier.KeySet{f.set, setB}, Now: f.clk.Now, CacheEntries: -1})
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, v, mint(t, jwt.SigningMethodRS256, k.rsa1, "a1", f.claims(issA)), "")
	wantCode(t, v, mint(t, jwt.SigningMethodRS256, k.other, "b1", f.claims(issB)), "")
	wantCode(t, v, mint(t, jwt.SigningMethodRS256, k.other, "b1", f.claims(issA)), verifier.CodeSignature)
}

func TestKeyIssuerBinding(t *testing.T) {
	k := keys()
	p := newProvider(t, setJSON(jwkOf("k1", &k.rsa1.PublicKey)))
	f := newFixture(t, Options{URL: p.url(), KeyIssuer: iss}, verifier.Config{CacheEntries: -1})
	f.refresh(t)
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa1, "k1", f.claims(iss)), "")
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa1, "k1", f.claims("https://other.example")), verifier.CodeSignature)
	if got, _ := f.set.Keys("k1", iss); got[0].Issuer != iss {
		t.Fatalf("key bound to %q", got[0].Issuer)
	}
}

func TestDiscovery(t *testing.T) {
	k := keys()
	p := newProvider(t, setJSON(jwkOf("k1", &k.rsa1.PublicKey)))
	// A trailing slash on the issuer is dropped before the well-known
	// path, and the document must then name the issuer with the slash.
	issuer := p.srv.URL + "/"
	p.set(func(p *provider) { p.discovery = map[string]any{"issuer": issuer, "jwks_uri": p.srv.URL + "/jwks"} })
	f := newFixture(t, Options{Issuer: issuer}, verifier.Config{CacheEntries: -1})
	f.refresh(t)
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa1, "k1", f.claims(issuer)), "")
	if d := p.discoveryHits.Load(); d != 1 {
		t.Fatalf("%d discovery fetches, want 1", d)
	}

	// An unknown kid refetches the JWK Set, not the discovery document.
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa1, "nope", f.claims(issuer)), verifier.CodeSignature)
	if d, j := p.discoveryHits.Load(), p.jwksHits.Load(); d != 1 || j != 2 {
		t.Fatalf("unknown kid: %d discovery and %d JWK Set fetches, want 1 and 2", d, j)
	}

	// The provider moves its JWK Set: the next refresh follows.
	p.set(func(p *provider) {
		p.discovery = map[string]any{"issuer": issuer, "jwks_uri": p.srv.URL + "/jwks2"}
		p.jwks = setJSON(jwkOf("k2", &k.rsa2.PublicKey))
	})
	f.refresh(t)
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa2, "k2", f.claims(issuer)), "")
	if f.set.jwksURI != p.srv.URL+"/jwks2" {
		t.Fatalf("jwks_uri %q", f.set.jwksURI)
	}
}

func TestDiscoveryWrongIssuerAtStart(t *testing.T) {
	k := keys()
	p := newProvider(t, setJSON(jwkOf("k1", &k.rsa1.PublicKey)))
	p.set(func(p *provider) {
		p.discovery = map[string]any{"issuer": "https://evil.example", "jwks_uri": p.srv.URL + "/jwks"}
	})
	f := newFixture(t, Options{Issuer: p.srv.URL}, verifier.Config{})
	if err := f.set.Refresh(context.Background()); err == nil {
		t.Fatal("discovery with another issuer accepted")
	}
	if f.rec.last() != ResultIssuer || p.jwksHits.Load() != 0 {
		t.Fatalf("result %q, %d JWK Set fetches", f.rec.last(), p.jwksHits.Load())
	}
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa1, "k1", f.claims(p.srv.URL)), verifier.CodeKeysUnavailable)
}

func TestKeysDoesNotAllocate(t *testing.T) {
	k := keys()
	p := newProvider(t, setJSON(jwkOf("k1", &k.rsa1.PublicKey), jwkOf("e1", &k.ec256.PublicKey)))
	f := newFixture(t, Options{URL: p.url()}, verifier.Config{})
	if _, loaded := f.set.Keys("k1", ""); loaded {
		t.Fatal("loaded before any fetch")
	}
	f.refresh(t)
	// Use up the unknown-kid fetch so that the next unknown kid takes
	// the rate-limited path.
	f.set.Keys("unknown", "")
	kid := string([]byte("e1")) // not a constant: as from a parsed token
	for name, fn := range map[string]func(){
		"kid":       func() { f.set.Keys(kid, "") },
		"no kid":    func() { f.set.Keys("", "") },
		"limited":   func() { f.set.Keys("unknown", "") },
		"not found": func() { f.set.Keys("k2", "") },
	} {
		if a := testing.AllocsPerRun(1000, fn); a != 0 {
			t.Errorf("Keys (%s): %v allocations", name, a)
		}
	}
	if keys, loaded := f.set.Keys("e1", ""); !loaded || len(keys) != 1 || keys[0].ID != "e1" {
		t.Fatalf("Keys(e1) = %v, %v", keys, loaded)
	}
	if keys, _ := f.set.Keys("", ""); len(keys) != 2 {
		t.Fatalf("Keys(\"\") = %d keys, want 2", len(keys))
	}
}

// TestConcurrentSwap verifies while the set is being replaced, for the
// race detector.
func TestConcurrentSwap(t *testing.T) {
	k := keys()
	docs := [][]byte{
		setJSON(jwkOf("e1", &k.ec256.PublicKey)),
		setJSON(jwkOf("e1", &k.ec256.PublicKey), jwkOf("d1", k.ed.Public())),
	}
	p := newProvider(t, docs[0])
	f := newFixture(t, Options{URL: p.url()}, verifier.Config{})
	f.refresh(t)
	tok := mint(t, jwt.SigningMethodES256, k.ec256, "e1", f.claims(iss))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := f.v.Verify(tok); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := range 20 {
		p.serve(docs[i%2])
		f.refresh(t)
	}
	close(stop)
	wg.Wait()
}

func TestNewValidation(t *testing.T) {
	for _, c := range []struct {
		name string
		opts Options
	}{
		{"nothing", Options{}},
		{"both", Options{URL: "https://a.example/jwks", Issuer: "https://a.example"}},
		{"relative", Options{URL: "/jwks"}},
		{"ftp", Options{URL: "ftp://a.example/jwks"}},
		{"no host", Options{URL: "https:///jwks"}},
		{"file", Options{URL: "file:///etc/passwd"}},
		{"issuer not a URL", Options{Issuer: "accounts.example"}},
		{"issuer with query", Options{Issuer: "https://a.example?x=1"}},
		{"key issuer differs", Options{Issuer: "https://a.example", KeyIssuer: "https://b.example"}},
		{"negative refresh", Options{URL: "https://a.example/jwks", Refresh: -time.Minute}},
		{"sub-second refresh", Options{URL: "https://a.example/jwks", Refresh: time.Millisecond}},
		{"negative MaxBytes", Options{URL: "https://a.example/jwks", MaxBytes: -1}},
	} {
		if _, err := New(c.opts); err == nil {
			t.Errorf("%s: New accepted %+v", c.name, c.opts)
		}
	}
	s, err := New(Options{Issuer: "https://a.example/realms/x/"})
	if err != nil {
		t.Fatal(err)
	}
	if s.discoveryURL != "https://a.example/realms/x/.well-known/openid-configuration" {
		t.Fatalf("discovery URL %q", s.discoveryURL)
	}
	if s.refresh != DefaultRefresh || s.maxBytes != DefaultMaxBytes || s.timeout != DefaultTimeout {
		t.Fatalf("defaults: %v %v %v", s.refresh, s.maxBytes, s.timeout)
	}
}

func TestCheckRedirect(t *testing.T) {
	req := func(u string) *http.Request {
		r, _ := http.NewRequest(http.MethodGet, u, nil)
		return r
	}
	via := []*http.Request{req("https://a.example/jwks")}
	if err := checkRedirect(req("https://b.example/jwks"), via); err != nil {
		t.Fatalf("https to https: %v", err)
	}
	if err := checkRedirect(req("http://b.example/jwks"), via); err != errDowngrade {
		t.Fatalf("https to http: %v", err)
	}
	for len(via) <= MaxRedirects {
		via = append(via, req("https://a.example/jwks"))
	}
	if err := checkRedirect(req("https://a.example/jwks"), via); err != errTooManyRedirects {
		t.Fatalf("redirect %d: %v", len(via), err)
	}
}

func TestKeysFor(t *testing.T) {
	k := keys()
	p := newProvider(t, setJSON(jwkOf("k1", &k.rsa1.PublicKey)))
	f := newFixture(t, Options{Issuer: p.srv.URL}, verifier.Config{})
	// Another issuer's token: nothing here for it, even before the first
	// load, and its kid is not a reason to fetch.
	if keys, loaded := f.set.Keys("b1", "https://other.example"); keys != nil || !loaded {
		t.Fatalf("foreign issuer before load: %v, %v", keys, loaded)
	}
	if _, loaded := f.set.Keys("k1", p.srv.URL); loaded {
		t.Fatal("own issuer before load: loaded")
	}
	f.refresh(t)
	if keys, _ := f.set.Keys("k1", p.srv.URL); len(keys) != 1 {
		t.Fatal("own issuer: key not found")
	}
	if a := testing.AllocsPerRun(100, func() { f.set.Keys("b1", "https://other.example") }); a != 0 {
		t.Fatalf("%v allocations", a)
	}
	if hits := p.jwksHits.Load(); hits != 1 {
		t.Fatalf("foreign kids caused fetches: %d hits", hits)
	}
}

// TestStopped: once the Start context ends, the loop returns and unknown
// kids no longer fetch.
func TestStopped(t *testing.T) {
	k := keys()
	p := newProvider(t, setJSON(jwkOf("k1", &k.rsa1.PublicKey)))
	f := newFixture(t, Options{URL: p.url()}, verifier.Config{})
	waits := make(chan time.Duration)
	f.set.sleep = func(ctx context.Context, d time.Duration) bool {
		waits <- d
		<-ctx.Done()
		return false
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.set.Start(ctx)
	if d := <-waits; d != DefaultRefresh {
		t.Fatalf("first wait %v", d)
	}
	cancel()
	<-f.set.loopDone
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa1, "k1", f.claims(iss)), "")
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa1, "new", f.claims(iss)), verifier.CodeSignature)
	if hits := p.jwksHits.Load(); hits != 1 {
		t.Fatalf("%d fetches after stop, want 1 in all", hits)
	}
}

// TestSeed: a Set built by a config reload starts with the old Set's keys
// and keeps them while the provider is down.
func TestSeed(t *testing.T) {
	k := keys()
	p := newProvider(t, setJSON(jwkOf("k1", &k.rsa1.PublicKey)))
	old, err := New(Options{URL: p.url(), KeyIssuer: iss})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, Options{URL: p.url(), KeyIssuer: iss}, verifier.Config{})
	if f.set.Seed(old) {
		t.Fatal("seeded from a Set that never loaded")
	}
	if err := old.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, o := range []Options{{URL: p.url()}, {URL: p.url() + "?v=2", KeyIssuer: iss}, {Issuer: p.srv.URL}} {
		other, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		if other.Seed(old) {
			t.Fatalf("%+v seeded from another source", o)
		}
	}
	if !f.set.Seed(old) {
		t.Fatal("not seeded")
	}
	p.set(func(p *provider) { p.status = http.StatusInternalServerError })
	if err := f.set.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh succeeded against a 500")
	}
	tok := mint(t, jwt.SigningMethodRS256, k.rsa1, "k1", f.claims(iss))
	wantCode(t, f.v, tok, "")

	p.set(func(p *provider) { p.status = http.StatusOK })
	f.refresh(t)
	if f.rec.last() != ResultUnchanged || f.rec.changeCount() != 0 {
		t.Fatalf("first fetch after the seed: %q, %d changes", f.rec.last(), f.rec.changeCount())
	}
}
