package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TestIndependentProofs verifies proofs that go-jose signed, for each kind
// of key, and one built by hand from JSON text.
func TestIndependentProofs(t *testing.T) {
	k := keys()
	cases := []struct {
		alg  jose.SignatureAlgorithm
		priv crypto.Signer
	}{
		{jose.ES256, k.ec256},
		{jose.ES384, k.ec384},
		{jose.ES512, k.ec521},
		{jose.RS256, k.rsa},
		{jose.PS256, k.rsa},
		{jose.EdDSA, k.ed},
	}
	v := newVerifier(t, Config{})
	for _, c := range cases {
		t.Run(string(c.alg), func(t *testing.T) {
			want := jkt(t, c.priv)
			res, err := v.Verify(joseProof(t, c.alg, c.priv, claims("jti", "proof-"+string(c.alg))), testRequest(want))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if res.Thumbprint != want || res.JTI != "proof-"+string(c.alg) || !res.IssuedAt.Equal(testNow) {
				t.Fatalf("result %+v", res)
			}
		})
	}
	t.Run("by hand", func(t *testing.T) {
		pt, err := k.ec256.PublicKey.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		x, y := base64.RawURLEncoding.EncodeToString(pt[1:33]), base64.RawURLEncoding.EncodeToString(pt[33:])
		// Member order, spacing and an escaped slash as a client might
		// write them; the thumbprint does not depend on them.
		hdr := `{ "jwk": {"y":"` + y + `", "x":"` + x + `", "kty":"EC", "crv":"P-256"}, "alg":"ES256", "typ":"dpop+jwt" }`
		payload := `{"htu":"https:\/\/api.example.com/orders/42","htm":"GET","jti":"hand-1","iat":1767225600,"ath":"` + athOf(testToken) + `"}`
		if _, err := v.Verify(rawProof(t, "ES256", k.ec256, hdr, payload), testRequest(jkt(t, k.ec256))); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	})
	t.Run("Ed25519 by name", func(t *testing.T) {
		hdr := header("dpop+jwt", "Ed25519", jwkJSON(t, publicOf(k.ed)))
		if _, err := v.Verify(rawProof(t, "Ed25519", k.ed, hdr, mustJSON(claims())), testRequest(jkt(t, k.ed))); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	})
}

// TestAttacks has one row per check of RFC 9449 §4.3 and per rule the
// SPEC adds, each with the outcome the handler maps to its answer.
func TestAttacks(t *testing.T) {
	k := keys()
	ecJWK := jwkJSON(t, publicOf(k.ec256))
	es := func(c map[string]any) func(*testing.T) string {
		return func(t *testing.T) string { return joseProof(t, jose.ES256, k.ec256, c) }
	}
	raw := func(alg string, key any, hdr string, c map[string]any) func(*testing.T) string {
		return func(t *testing.T) string { return rawProof(t, alg, key, hdr, mustJSON(c)) }
	}
	payload := func(p string) func(*testing.T) string {
		return func(t *testing.T) string { return rawProof(t, "ES256", k.ec256, header("dpop+jwt", "ES256", ecJWK), p) }
	}
	// edit changes the JSON text of a valid claim set.
	edit := func(old, new string) func(*testing.T) string {
		return payload(strings.Replace(mustJSON(claims()), old, new, 1))
	}
	secret := []byte("0123456789abcdef0123456789abcdef")

	stale, _ := NewNonces(secret, func() time.Time { return testNow.Add(-3 * NonceSlot) })
	prev, _ := NewNonces(secret, func() time.Time { return testNow.Add(-NonceSlot) })
	cur, _ := NewNonces(secret, fixedNow)

	rows := []struct {
		name  string
		proof func(*testing.T) string
		req   func(*Request)
		nonce bool   // the verifier requires nonces (keyed by secret)
		algs  string // the verifier's algorithms, space-separated
		twice bool   // the first Verify must pass; the second is checked
		want  string
		why   *Error // the refusal expected, so a row fails for its own reason
	}{
		{name: "valid", proof: es(claims()), want: okay},

		// typ
		{name: "typ JWT", proof: raw("ES256", k.ec256, header("JWT", "ES256", ecJWK), claims()), want: badProof, why: errType},
		{name: "typ with application/", proof: raw("ES256", k.ec256, header("application/dpop+jwt", "ES256", ecJWK), claims()), want: badProof, why: errType},
		{name: "no typ", proof: raw("ES256", k.ec256, `{"alg":"ES256","jwk":`+ecJWK+`}`, claims()), want: badProof, why: errType},

		// alg
		{name: "alg none", proof: raw("none", nil, header("dpop+jwt", "none", ecJWK), claims()), want: badProof, why: errSegments},
		{name: "alg none with a signature", proof: func(t *testing.T) string {
			return raw("none", nil, header("dpop+jwt", "none", ecJWK), claims())(t) + "c2ln"
		}, want: badProof, why: errAlgorithm},
		{name: "alg HS256 with an oct jwk", proof: raw("HS256", secret, header("dpop+jwt", "HS256", `{"kty":"oct","k":"`+base64.RawURLEncoding.EncodeToString(secret)+`"}`), claims()), want: badProof, why: errAlgorithm},
		{name: "alg HS256 keyed with the public jwk", proof: raw("HS256", []byte(ecJWK), header("dpop+jwt", "HS256", ecJWK), claims()), want: badProof, why: errAlgorithm},
		{name: "alg not configured", proof: func(t *testing.T) string { return joseProof(t, jose.PS256, k.rsa, claims()) }, algs: "ES256 EdDSA", want: badProof, why: errAlgorithm},
		{name: "crit header", proof: raw("ES256", k.ec256, `{"typ":"dpop+jwt","alg":"ES256","crit":["exp"],"jwk":`+ecJWK+`}`, claims()), want: badProof, why: errCrit},

		// jwk
		{name: "no jwk", proof: raw("ES256", k.ec256, `{"typ":"dpop+jwt","alg":"ES256"}`, claims()), want: badProof, why: errNoJWK},
		{name: "EC private key in jwk", proof: raw("ES256", k.ec256, header("dpop+jwt", "ES256", jwkJSON(t, k.ec256)), claims()), want: badProof, why: errPrivateKey},
		{name: "RSA private key in jwk", proof: raw("RS256", k.rsa, header("dpop+jwt", "RS256", jwkJSON(t, k.rsa)), claims()), want: badProof, why: errPrivateKey},
		{name: "Ed25519 private key in jwk", proof: raw("EdDSA", k.ed, header("dpop+jwt", "EdDSA", jwkJSON(t, k.ed)), claims()), want: badProof, why: errPrivateKey},
		{name: "jwk of another type", proof: raw("RS256", k.rsa, header("dpop+jwt", "RS256", ecJWK), claims()), want: badProof, why: errKeyAlgorithm},
		{name: "jwk on another curve", proof: raw("ES256", k.ec256, header("dpop+jwt", "ES256", jwkJSON(t, publicOf(k.ec384))), claims()), want: badProof, why: errKeyAlgorithm},
		{name: "jwk alg another algorithm", proof: raw("ES256", k.ec256, header("dpop+jwt", "ES256", strings.Replace(ecJWK, "{", `{"alg":"ES384",`, 1)), claims()), want: badProof, why: errKeyAlgorithm},
		{name: "jwk point not on the curve", proof: raw("ES256", k.ec256, header("dpop+jwt", "ES256", offCurve(t, k.ec256)), claims()), want: badProof, why: errJWK},
		{name: "RSA key of 1024 bits", proof: raw("RS256", k.rsa1024, header("dpop+jwt", "RS256", jwkJSON(t, publicOf(k.rsa1024))), claims()), want: badProof, why: errRSASize},
		{name: "jwk not an object", proof: raw("ES256", k.ec256, `{"typ":"dpop+jwt","alg":"ES256","jwk":"x"}`, claims()), want: badProof, why: errJWK},
		{name: "jwk with duplicate x", proof: raw("ES256", k.ec256, header("dpop+jwt", "ES256", strings.Replace(ecJWK, "{", `{"x":"AAAA",`, 1)), claims()), want: badProof, why: errHeaderJSON},

		// signature
		{name: "bad signature", proof: func(t *testing.T) string {
			p := joseProof(t, jose.ES256, k.ec256, claims())
			i := strings.LastIndexByte(p, '.') + 5
			c := byte('A')
			if p[i] == 'A' {
				c = 'B'
			}
			return p[:i] + string(c) + p[i+1:]
		}, want: badProof, why: errSignature},
		{name: "signed by another key", proof: raw("ES256", k.other, header("dpop+jwt", "ES256", ecJWK), claims()), want: badProof, why: errSignature},
		{name: "claims changed after signing", proof: func(t *testing.T) string {
			p := joseProof(t, jose.ES256, k.ec256, claims("htm", "POST"))
			parts := strings.Split(p, ".")
			return parts[0] + "." + b64(mustJSON(claims())) + "." + parts[2]
		}, want: badProof, why: errSignature},
		{name: "two proofs in one header", proof: func(t *testing.T) string {
			return joseProof(t, jose.ES256, k.ec256, claims()) + ", " + joseProof(t, jose.ES256, k.ec256, claims())
		}, want: badProof, why: errSegments},

		// htm
		{name: "another method", proof: es(claims("htm", "POST")), want: badProof, why: errMethod},
		{name: "method case", proof: es(claims("htm", "get")), want: badProof, why: errMethod},
		// A proof without htm (or htu) binds to no request: refused as a
		// missing claim (RFC 9449 §4.2 requires both), not compared as "".
		{name: "no htm", proof: es(claims("htm", nil)), want: badProof, why: errClaims},
		{name: "htm not a string", proof: es(claims("htm", []string{"GET"})), want: badProof, why: errClaims},
		{name: "empty htm", proof: es(claims("htm", "")), want: badProof, why: errMethod},

		// htu
		{name: "another path", proof: es(claims("htu", "https://api.example.com/orders/43")), want: badProof, why: errURL},
		{name: "another host", proof: es(claims("htu", "https://evil.example.com/orders/42")), want: badProof, why: errURL},
		{name: "another scheme", proof: es(claims("htu", "http://api.example.com/orders/42")), want: badProof, why: errURL},
		{name: "another port", proof: es(claims("htu", "https://api.example.com:8443/orders/42")), want: badProof, why: errURL},
		{name: "a prefix of the path", proof: es(claims("htu", "https://api.example.com/orders")), want: badProof, why: errURL},
		{name: "encoded slash", proof: es(claims("htu", "https://api.example.com/orders%2F42")), want: badProof, why: errURL},
		{name: "user information", proof: es(claims("htu", "https://user@api.example.com/orders/42")), want: badProof, why: errURL},
		{name: "relative htu", proof: es(claims("htu", "/orders/42")), want: badProof, why: errURL},
		{name: "query must not matter", proof: es(claims("htu", "https://api.example.com/orders/42?page=2")),
			req: func(r *Request) { r.Path = "/orders/42?page=3" }, want: okay},
		{name: "fragment must not matter", proof: es(claims("htu", "https://api.example.com/orders/42#top")), want: okay},
		{name: "host case and default port must not matter", proof: es(claims("htu", "HTTPS://API.Example.COM:443/orders/42")), want: okay},
		{name: "default port in the request must not matter", proof: es(claims()),
			req: func(r *Request) { r.Host = "API.example.com:443" }, want: okay},
		{name: "percent-encoding must not matter", proof: es(claims("htu", "https://api.example.com/%6Frders/%34%32")), want: okay},
		{name: "hex case must not matter", proof: es(claims("htu", "https://api.example.com/a%2fb%C3%a9")),
			req: func(r *Request) { r.Path = "/a%2F%62%c3%A9" }, want: okay},
		{name: "dot segments must not matter", proof: es(claims("htu", "https://api.example.com/v1/../orders/./42")), want: okay},
		{name: "htu not a string", proof: edit(`"htu":"https://api.example.com/orders/42"`, `"htu":["https://api.example.com/orders/42"]`), want: badProof, why: errClaims},
		{name: "no htu", proof: es(claims("htu", nil)), want: badProof, why: errClaims},
		{name: "empty htu", proof: es(claims("htu", "")), want: badProof, why: errURL},

		// iat
		{name: "old iat", proof: es(claims("iat", testNow.Unix()-61)), want: badProof, why: errTooOld},
		{name: "iat at max age", proof: es(claims("iat", testNow.Unix()-60)), want: okay},
		{name: "future iat", proof: es(claims("iat", testNow.Unix()+6)), want: badProof, why: errFuture},
		{name: "iat within leeway", proof: es(claims("iat", testNow.Unix()+5)), want: okay},
		{name: "no iat", proof: es(claims("iat", nil)), want: badProof, why: errClaims},
		{name: "iat a string", proof: es(claims("iat", "1767225600")), want: badProof, why: errClaims},
		{name: "iat in milliseconds", proof: es(claims("iat", testNow.UnixMilli())), want: badProof, why: errClaims},

		// jti
		{name: "no jti", proof: es(claims("jti", nil)), want: badProof, why: errJTI},
		{name: "empty jti", proof: es(claims("jti", "")), want: badProof, why: errJTI},
		{name: "jti too long", proof: es(claims("jti", strings.Repeat("j", MaxJTILength+1))), want: badProof, why: errJTI},
		{name: "replay", proof: es(claims()), twice: true, want: badProof, why: errReplay},

		// ath
		{name: "no ath", proof: es(claims("ath", nil)), want: badProof, why: errClaims},
		{name: "ath of another token", proof: es(claims("ath", athOf(testToken+"x"))), want: badProof, why: errATH},
		{name: "ath padded", proof: es(claims("ath", athOf(testToken)+"=")), want: badProof, why: errATH},
		{name: "ath in standard base64", proof: es(claims("ath", athStd(testToken))), want: badProof, why: errATH},
		{name: "ath with its unused bits set", proof: es(claims("ath", athNonCanonical(testToken))), want: badProof, why: errATH},

		// binding
		{name: "thumbprint not cnf.jkt", proof: func(t *testing.T) string { return joseProof(t, jose.ES256, k.other, claims()) }, want: badBinding, why: errMismatch},
		{name: "unbound token", proof: es(claims()), req: func(r *Request) { r.JKT = "" }, want: badBinding, why: errUnbound},

		// nonce
		{name: "nonce missing", proof: es(claims()), nonce: true, want: needNonce},
		{name: "nonce stale", proof: es(claims("nonce", stale.Nonce())), nonce: true, want: needNonce},
		{name: "nonce forged", proof: es(claims("nonce", "AAAAAAAAAAAAAAAAAAAAAA")), nonce: true, want: needNonce},
		{name: "nonce not a string", proof: es(claims("nonce", 1)), nonce: true, want: badProof, why: errClaims},
		{name: "nonce current", proof: es(claims("nonce", cur.Nonce())), nonce: true, want: okay},
		{name: "nonce of the previous slot", proof: es(claims("nonce", prev.Nonce())), nonce: true, want: okay},

		// the JWS and its JSON
		{name: "empty", proof: func(*testing.T) string { return "" }, want: badProof, why: errMissing},
		{name: "two segments", proof: func(t *testing.T) string {
			p := joseProof(t, jose.ES256, k.ec256, claims())
			return p[:strings.LastIndexByte(p, '.')]
		}, want: badProof, why: errSegments},
		{name: "padded segment", proof: func(t *testing.T) string {
			return strings.Replace(joseProof(t, jose.ES256, k.ec256, claims()), ".", "=.", 1)
		}, want: badProof, why: errSegments},
		{name: "line break in a segment", proof: func(t *testing.T) string {
			return strings.Replace(joseProof(t, jose.ES256, k.ec256, claims()), ".", "\n.", 1)
		}, want: badProof, why: errSegments},
		// A cached header is not looked at for line breaks again: the
		// other segments still are (the /warm runs).
		{name: "line break in the claims", proof: func(t *testing.T) string {
			p := joseProof(t, jose.ES256, k.ec256, claims())
			i := strings.LastIndexByte(p, '.')
			return p[:i] + "\n" + p[i:]
		}, want: badProof, why: errSegments},
		{name: "carriage return in the signature", proof: func(t *testing.T) string {
			return joseProof(t, jose.ES256, k.ec256, claims()) + "\r"
		}, want: badProof, why: errSegments},
		{name: "duplicate htu", proof: edit(`"htu":`, `"htu":"https://api.example.com/orders/42","htu":`), want: badProof, why: errPayloadJSON},
		{name: "duplicate htu escaped", proof: edit(`"htu":`, `"htu":"https://api.example.com/orders/42","\u0068tu":`), want: badProof, why: errPayloadJSON},
		{name: "duplicate typ", proof: raw("ES256", k.ec256, `{"typ":"dpop+jwt","typ":"JWT","alg":"ES256","jwk":`+ecJWK+`}`, claims()), want: badProof, why: errHeaderJSON},
		{name: "trailing data", proof: edit(`}`, `} `), want: okay},
		{name: "trailing garbage", proof: edit(`"iat"`, `"x":{}}{"iat"`), want: badProof, why: errPayloadJSON},
		{name: "payload an array", proof: payload(`[]`), want: badProof, why: errPayloadJSON},
		{name: "invalid UTF-8", proof: edit(`"htm":"GET"`, "\"htm\":\"GET\",\"x\":\"\xff\""), want: badProof, why: errPayloadJSON},
		{name: "too long", proof: es(claims("pad", strings.Repeat("p", MaxProofLength))), want: badProof, why: errTooLong},
	}
	// Each row runs on a new Verifier and on one whose header cache holds
	// the headers the rows' proofs share, from proofs that passed: a
	// cached header must not skip a check.
	for _, r := range rows {
		for _, warm := range []bool{false, true} {
			name := r.name
			if warm {
				name += "/warm"
			}
			t.Run(name, func(t *testing.T) {
				cfg := Config{}
				if r.nonce {
					cfg.RequireNonce, cfg.Nonces = true, cur
				}
				if r.algs != "" {
					cfg.Algorithms = strings.Fields(r.algs)
				}
				v := newVerifier(t, cfg)
				req := testRequest(jkt(t, k.ec256))
				if warm {
					for _, p := range []string{
						joseProof(t, jose.ES256, k.ec256, claims("nonce", cur.Nonce())),
						rawProof(t, "ES256", k.ec256, header("dpop+jwt", "ES256", ecJWK), mustJSON(claims("nonce", cur.Nonce()))),
					} {
						if _, err := v.Verify(p, req); err != nil {
							t.Fatalf("warming up: %v", err)
						}
					}
					if v.headers.len() != 2 {
						t.Fatalf("%d headers cached", v.headers.len())
					}
				}
				if r.req != nil {
					r.req(&req)
				}
				proof := r.proof(t)
				if r.twice {
					if _, err := v.Verify(proof, req); err != nil {
						t.Fatalf("first Verify: %v", err)
					}
				}
				_, err := v.Verify(proof, req)
				if got := outcome(err); got != r.want {
					t.Fatalf("got %s (%v), want %s", got, err, r.want)
				}
				if r.why != nil && err != r.why {
					t.Fatalf("refused with %q, want %q", err, r.why)
				}
				if e, ok := err.(*Error); ok {
					if r.want == needNonce && e.Nonce != cur.Nonce() {
						t.Fatalf("use_dpop_nonce with nonce %q, want the current %q", e.Nonce, cur.Nonce())
					}
					if r.want != needNonce && e.Nonce != "" {
						t.Fatalf("nonce %q with %s", e.Nonce, outcome(err))
					}
					if e.Reason == "" || strings.ContainsAny(e.Reason, `"\`) {
						t.Fatalf("reason %q unfit for error_description", e.Reason)
					}
				}
			})
		}
	}
}

// athStd is ath in the standard base64 alphabet, padded.
func athStd(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// offCurve is ecJWK with y changed, so the point is not on P-256.
func offCurve(t *testing.T, priv *ecdsa.PrivateKey) string {
	pt, err := priv.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	pt[64] ^= 1
	return `{"kty":"EC","crv":"P-256","x":"` + base64.RawURLEncoding.EncodeToString(pt[1:33]) + `","y":"` + base64.RawURLEncoding.EncodeToString(pt[33:]) + `"}`
}

// TestFailedProofsNotRecorded: a proof refused for any reason leaves no
// trace in the replay cache, so a refusal cannot be turned into a replay
// and a client's retry of the same proof after a binding or nonce answer
// is judged on its own.
func TestFailedProofsNotRecorded(t *testing.T) {
	k := keys()
	secret := []byte("0123456789abcdef0123456789abcdef")
	nonces, _ := NewNonces(secret, fixedNow)
	v := newVerifier(t, Config{RequireNonce: true, Nonces: nonces})
	want := jkt(t, k.ec256)

	noNonce := joseProof(t, jose.ES256, k.ec256, claims("jti", "same"))
	if got := outcome(ignore(v.Verify(noNonce, testRequest(want)))); got != needNonce {
		t.Fatalf("without nonce: %s", got)
	}
	withNonce := joseProof(t, jose.ES256, k.ec256, claims("jti", "same", "nonce", nonces.Nonce()))
	wrong := testRequest(jkt(t, k.other))
	if got := outcome(ignore(v.Verify(withNonce, wrong))); got != badBinding {
		t.Fatalf("other jkt: %s", got)
	}
	badSig := withNonce[:len(withNonce)-3] + "AAA"
	if got := outcome(ignore(v.Verify(badSig, testRequest(want)))); got != badProof {
		t.Fatalf("bad signature: %s", got)
	}
	if _, err := v.Verify(withNonce, testRequest(want)); err != nil {
		t.Fatalf("the proof, after three refusals with its jti: %v", err)
	}
	if got := outcome(ignore(v.Verify(withNonce, testRequest(want)))); got != badProof {
		t.Fatalf("replayed: %s", got)
	}
}

func ignore(_ Result, err error) error { return err }

// TestConcurrentReplay sends one proof from many goroutines at once:
// exactly one passes.
func TestConcurrentReplay(t *testing.T) {
	k := keys()
	v := newVerifier(t, Config{ReplayEntries: 1024})
	want := jkt(t, k.ec256)
	for round := 0; round < 20; round++ {
		proof := joseProof(t, jose.ES256, k.ec256, claims())
		var passed, replayed atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := v.Verify(proof, testRequest(want))
				switch outcome(err) {
				case okay:
					passed.Add(1)
				case badProof:
					replayed.Add(1)
				default:
					t.Errorf("unexpected %v", err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if passed.Load() != 1 || replayed.Load() != 15 {
			t.Fatalf("round %d: %d passed, %d refused as replays; want 1 and 15", round, passed.Load(), replayed.Load())
		}
	}
}

// TestReplayWindow: a jti is refused for as long as its proof's iat passes,
// and the proof itself is refused as too old after that.
func TestReplayWindow(t *testing.T) {
	k := keys()
	clock := newClock(testNow)
	v := newVerifier(t, Config{Now: clock.Now, ReplayEntries: 64})
	want := jkt(t, k.ec256)
	proof := joseProof(t, jose.ES256, k.ec256, claims("iat", testNow.Unix()+5))
	if _, err := v.Verify(proof, testRequest(want)); err != nil {
		t.Fatal(err)
	}
	// iat + max_age = now + 65s: still a replay at the last instant.
	for _, d := range []time.Duration{time.Second, 30 * time.Second, 64 * time.Second, 65 * time.Second} {
		clock.Set(testNow.Add(d))
		if got := outcome(ignore(v.Verify(proof, testRequest(want)))); got != badProof {
			t.Fatalf("at +%v: %s", d, got)
		}
		if _, e := v.Verify(proof, testRequest(want)); e != errReplay {
			t.Fatalf("at +%v: %v, want the replay error", d, e)
		}
	}
	clock.Set(testNow.Add(65*time.Second + time.Millisecond))
	if _, e := v.Verify(proof, testRequest(want)); e != errTooOld {
		t.Fatalf("after the window: %v, want too old", e)
	}
}

// TestReplayKeptForTheLongestMaxAge: two verifiers share a cache, one
// with max_age 10s (or a config before a reload), one with 120s. A proof
// accepted by the first must stay spent for the second's whole window.
func TestReplayKeptForTheLongestMaxAge(t *testing.T) {
	k := keys()
	clock := newClock(testNow)
	cache := NewReplayCache(64, clock.Now)
	longest := func() time.Duration { return 120 * time.Second }
	short := newVerifier(t, Config{Now: clock.Now, Replay: cache, MaxAge: 10 * time.Second, RememberFor: longest})
	long := newVerifier(t, Config{Now: clock.Now, Replay: cache, MaxAge: 120 * time.Second, RememberFor: longest})
	want := jkt(t, k.ec256)
	proof := joseProof(t, jose.ES256, k.ec256, claims())
	if _, err := short.Verify(proof, testRequest(want)); err != nil {
		t.Fatal(err)
	}
	clock.Set(testNow.Add(30 * time.Second))
	if _, e := short.Verify(proof, testRequest(want)); e != errTooOld {
		t.Fatalf("on the short route after its window: %v, want too old", e)
	}
	if _, e := long.Verify(proof, testRequest(want)); e != errReplay {
		t.Fatalf("on the long route at +30s: %v, want the replay error", e)
	}
	// Without RememberFor the entry went with the short window: the
	// replay would pass (the weakness this guards against).
	clock.Set(testNow)
	bare := NewReplayCache(64, clock.Now)
	short2 := newVerifier(t, Config{Now: clock.Now, Replay: bare, MaxAge: 10 * time.Second})
	long2 := newVerifier(t, Config{Now: clock.Now, Replay: bare, MaxAge: 120 * time.Second})
	if _, err := short2.Verify(proof, testRequest(want)); err != nil {
		t.Fatal(err)
	}
	clock.Set(testNow.Add(30 * time.Second))
	if _, e := long2.Verify(proof, testRequest(want)); e != nil {
		t.Fatalf("control: without RememberFor the long route said %v; the test no longer shows the gap", e)
	}
}

// staleAfterCheck is a replay cache whose clock jumps while it works, as
// a slow insert would see it.
type staleAfterCheck struct {
	clock *fakeClock
	inner ReplayCache
}

func (s staleAfterCheck) Seen(jti string, until time.Time) (bool, error) {
	s.clock.Add(2 * time.Second)
	return s.inner.Seen(jti, until)
}

// TestAgeCheckedAfterInsert: a replay that passed the age check just
// before its first use's entry expired is refused: the age is checked
// again after the insert.
func TestAgeCheckedAfterInsert(t *testing.T) {
	k := keys()
	clock := newClock(testNow)
	cache := NewReplayCache(64, clock.Now)
	v := newVerifier(t, Config{Now: clock.Now, Replay: staleAfterCheck{clock, cache}})
	want := jkt(t, k.ec256)
	proof := joseProof(t, jose.ES256, k.ec256, claims())
	if _, err := v.Verify(proof, testRequest(want)); err != nil {
		t.Fatal(err)
	}
	// Now 59s after iat: the age check passes, then the cache's clock
	// reads 61s, past the entry's expiry, and takes the jti as new.
	clock.Set(testNow.Add(59 * time.Second))
	if _, e := v.Verify(proof, testRequest(want)); e != errTooOld {
		t.Fatalf("replay across the expiry: %v, want too old", e)
	}
}

// failingCache stands for a shared cache that cannot answer.
type failingCache struct{ err error }

func (f failingCache) Seen(string, time.Time) (bool, error) { return false, f.err }

func TestReplayCacheFailure(t *testing.T) {
	k := keys()
	want := jkt(t, k.ec256)
	for _, err := range []error{ErrReplayCacheFull, errTest} {
		v := newVerifier(t, Config{Replay: failingCache{err}})
		_, e := v.Verify(joseProof(t, jose.ES256, k.ec256, claims()), testRequest(want))
		if got := outcome(e); got != unavailable {
			t.Fatalf("%v: %s", err, got)
		}
	}
	// A full local cache refuses new proofs and keeps refusing replays.
	v := newVerifier(t, Config{ReplayEntries: 1})
	var accepted []string
	for i := 0; i < 200; i++ {
		p := joseProof(t, jose.ES256, k.ec256, claims())
		_, err := v.Verify(p, testRequest(want))
		switch outcome(err) {
		case okay:
			accepted = append(accepted, p)
		case unavailable:
		default:
			t.Fatalf("proof %d: %v", i, err)
		}
	}
	if len(accepted) == 0 || len(accepted) == 200 {
		t.Fatalf("%d of 200 accepted by a one-entry cache", len(accepted))
	}
	for _, p := range accepted {
		if got := outcome(ignore(v.Verify(p, testRequest(want)))); got != badProof {
			t.Fatalf("replay into a full cache: %s", got)
		}
	}
}

var errTest = &testError{}

type testError struct{}

func (*testError) Error() string { return "redis: connection refused" }

// TestOrigin: with Origin, htu is the origin and the path, whatever the
// request's scheme and Host.
func TestOrigin(t *testing.T) {
	k := keys()
	v := newVerifier(t, Config{Origin: "HTTPS://API.example.com:443"})
	want := jkt(t, k.ec256)
	req := testRequest(want)
	req.Scheme, req.Host = "http", "10.0.0.7:8080"
	if _, err := v.Verify(joseProof(t, jose.ES256, k.ec256, claims()), req); err != nil {
		t.Fatalf("origin + path: %v", err)
	}
	htu := "http://10.0.0.7:8080/orders/42"
	if got := outcome(ignore(v.Verify(joseProof(t, jose.ES256, k.ec256, claims("htu", htu)), req))); got != badProof {
		t.Fatalf("the internal URL under origin: %s", got)
	}
}

func TestConfig(t *testing.T) {
	for _, c := range []struct {
		cfg Config
		bad string // a word of the error, "" for none
	}{
		{Config{}, ""},
		{Config{Algorithms: []string{"ES256", "Ed25519"}}, ""},
		{Config{Algorithms: []string{"none"}}, "none"},
		{Config{Algorithms: []string{"ES256", "HS256"}}, "HS256"},
		{Config{Algorithms: []string{"HS512"}}, "HS512"},
		{Config{Algorithms: []string{"ES256K"}}, "unknown"},
		{Config{Algorithms: []string{"es256"}}, "unknown"},
		{Config{MaxAge: -time.Second}, "max_age"},
		{Config{Origin: "https://api.example.com"}, ""},
		{Config{Origin: "http://[::1]:8080/"}, ""},
		{Config{Origin: "api.example.com"}, "origin"},
		{Config{Origin: "https://api.example.com/v1"}, "origin"},
		{Config{Origin: "https://api.example.com?x"}, "origin"},
		{Config{Origin: "ftp://api.example.com"}, "origin"},
		{Config{Origin: "https://u@api.example.com"}, "origin"},
	} {
		_, err := New(c.cfg)
		switch {
		case c.bad == "" && err != nil:
			t.Errorf("%+v: %v", c.cfg, err)
		case c.bad != "" && (err == nil || !strings.Contains(err.Error(), c.bad)):
			t.Errorf("%+v: error %v, want one about %s", c.cfg, err, c.bad)
		}
	}
	v := newVerifier(t, Config{Algorithms: []string{"Ed25519", "ES256"}})
	if got := strings.Join(v.Algorithms(), " "); got != "ES256 EdDSA" {
		t.Fatalf("algorithms %q", got)
	}
	v = newVerifier(t, Config{})
	if got := strings.Join(v.Algorithms(), " "); got != "ES256 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512 EdDSA" {
		t.Fatalf("default algorithms %q", got)
	}
	if v.Window() != 65*time.Second || v.Nonce() != "" {
		t.Fatalf("window %v, nonce %q", v.Window(), v.Nonce())
	}
	v = newVerifier(t, Config{MaxAge: 10 * time.Second, Leeway: -1})
	if v.Window() != 10*time.Second {
		t.Fatalf("window %v with no leeway", v.Window())
	}
}

func TestLeewayNone(t *testing.T) {
	k := keys()
	v := newVerifier(t, Config{Leeway: -1})
	want := jkt(t, k.ec256)
	if got := outcome(ignore(v.Verify(joseProof(t, jose.ES256, k.ec256, claims("iat", testNow.Unix()+1)), testRequest(want)))); got != badProof {
		t.Fatalf("iat 1s ahead with no leeway: %s", got)
	}
	if _, err := v.Verify(joseProof(t, jose.ES256, k.ec256, claims()), testRequest(want)); err != nil {
		t.Fatal(err)
	}
}

func TestProofHeader(t *testing.T) {
	for _, c := range []struct {
		h    http.Header
		want string
	}{
		{http.Header{}, badProof},
		{http.Header{"Dpop": {""}}, badProof},
		{http.Header{"Dpop": {"a.b.c", "d.e.f"}}, badProof},
		{http.Header{"Dpop": {"a.b.c"}}, okay},
	} {
		p, err := ProofHeader(c.h)
		if got := outcome(err); got != c.want {
			t.Errorf("%v: %s", c.h, got)
		}
		if err == nil && p != "a.b.c" {
			t.Errorf("%v: proof %q", c.h, p)
		}
	}
	// As net/http stores a header a client wrote as "DPoP" or "dpop".
	h := http.Header{}
	h.Add("DPoP", "a.b.c")
	h.Add("dpop", "x")
	if _, err := ProofHeader(h); err != errRepeated {
		t.Fatalf("DPoP and dpop: %v", err)
	}
}

func TestChallenge(t *testing.T) {
	v := newVerifier(t, Config{Algorithms: []string{"ES256", "EdDSA"}})
	if got := v.Challenge(nil); got != `DPoP algs="ES256 EdDSA"` {
		t.Fatalf("no error: %s", got)
	}
	if got := v.Challenge(errReplay); got != `DPoP algs="ES256 EdDSA", error="invalid_dpop_proof", error_description="DPoP proof replayed"` {
		t.Fatalf("replay: %s", got)
	}
	if got := v.Challenge(errMismatch); !strings.Contains(got, `error="invalid_token"`) {
		t.Fatalf("binding: %s", got)
	}
}

// TestNonceAdvice: a proof with the previous slot's nonce passes and gets
// the current nonce to send on; one with the current nonce gets none.
func TestNonceAdvice(t *testing.T) {
	k := keys()
	secret := []byte("0123456789abcdef0123456789abcdef")
	nonces, _ := NewNonces(secret, fixedNow)
	prev, _ := NewNonces(secret, func() time.Time { return testNow.Add(-NonceSlot) })
	v := newVerifier(t, Config{RequireNonce: true, Nonces: nonces})
	want := jkt(t, k.ec256)
	res, err := v.Verify(joseProof(t, jose.ES256, k.ec256, claims("nonce", prev.Nonce())), testRequest(want))
	if err != nil || res.Nonce != nonces.Nonce() {
		t.Fatalf("previous nonce: %v, advice %q", err, res.Nonce)
	}
	res, err = v.Verify(joseProof(t, jose.ES256, k.ec256, claims("nonce", nonces.Nonce())), testRequest(want))
	if err != nil || res.Nonce != "" {
		t.Fatalf("current nonce: %v, advice %q", err, res.Nonce)
	}
	if v.Nonce() != nonces.Nonce() {
		t.Fatal("Verifier.Nonce is not the source's")
	}
}

// TestRSAKeyChecks covers the RSA members a proof key must get right.
func TestRSAKeyChecks(t *testing.T) {
	k := keys()
	n := base64.RawURLEncoding.EncodeToString(k.rsa.N.Bytes())
	for _, c := range []struct {
		name, jwk string
		want      string
	}{
		{"minimal", `{"kty":"RSA","n":"` + n + `","e":"AQAB"}`, okay},
		{"n with a leading zero", `{"kty":"RSA","n":"` + base64.RawURLEncoding.EncodeToString(append([]byte{0}, k.rsa.N.Bytes()...)) + `","e":"AQAB"}`, badProof},
		{"e with a leading zero", `{"kty":"RSA","n":"` + n + `","e":"AAEAAQ"}`, badProof},
		{"e even", `{"kty":"RSA","n":"` + n + `","e":"AQAA"}`, badProof},
		{"e one", `{"kty":"RSA","n":"` + n + `","e":"AQ"}`, badProof},
		{"no e", `{"kty":"RSA","n":"` + n + `"}`, badProof},
		{"n a number", `{"kty":"RSA","n":5,"e":"AQAB"}`, badProof},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := newVerifier(t, Config{})
			// The binding is to the thumbprint of the JWK as sent.
			tp, _ := Thumbprint(c.jwk)
			if tp == "" {
				tp = "x"
			}
			p := rawProof(t, "RS256", k.rsa, header("dpop+jwt", "RS256", c.jwk), mustJSON(claims()))
			if got := outcome(ignore(v.Verify(p, testRequest(tp)))); got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
		})
	}
	// The key of go-jose's JWK has the same thumbprint.
	if tp, _ := Thumbprint(`{"kty":"RSA","n":"` + n + `","e":"AQAB"}`); tp != jkt(t, k.rsa) {
		t.Fatalf("thumbprint %s, go-jose %s", tp, jkt(t, k.rsa))
	}
}
