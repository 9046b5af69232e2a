package dpop

import (
	"crypto"
	"strings"
	"testing"

	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// rfc7638Key is the JWK of RFC 7638 §3.1, as the RFC prints it.
const rfc7638Key = `{
      "kty": "RSA",
      "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
      "e": "AQAB",
      "alg": "RS256",
      "kid": "2011-04-29"
     }`

func TestThumbprintRFC7638(t *testing.T) {
	const want = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
	got, err := Thumbprint(rfc7638Key)
	if err != nil || got != want {
		t.Fatalf("Thumbprint = %q, %v; want %q", got, err, want)
	}
	// Member order and the optional members do not matter.
	reordered := `{"kid":"other","e":"AQAB","n":"` + jsonMember(t, rfc7638Key, "n") + `","kty":"RSA","use":"sig"}`
	if got, _ := Thumbprint(reordered); got != want {
		t.Fatalf("reordered: %q", got)
	}
}

// jsonMember reads a string member of a JSON object (test helper).
func jsonMember(t *testing.T, obj, name string) string {
	members, err := verifier.ParseJSONObject(obj, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.Name == name {
			return verifier.JSONUnquote(m.Raw)
		}
	}
	t.Fatalf("no member %s", name)
	return ""
}

// TestThumbprintGoJose compares with go-jose's thumbprints for every key
// type a proof can carry.
func TestThumbprintGoJose(t *testing.T) {
	k := keys()
	for name, priv := range map[string]crypto.Signer{"P-256": k.ec256, "P-384": k.ec384, "P-521": k.ec521, "RSA": k.rsa, "Ed25519": k.ed} {
		got, err := Thumbprint(jwkJSON(t, publicOf(priv)))
		if err != nil || got != jkt(t, priv) {
			t.Errorf("%s: %q, %v; go-jose says %q", name, got, err, jkt(t, priv))
		}
	}
}

func TestThumbprintErrors(t *testing.T) {
	for _, j := range []string{
		``,
		`[]`,
		`{"kty":"oct","k":"c2VjcmV0"}`,
		`{"kty":"EC","crv":"P-256","x":"AAAA"}`,
		`{"kty":"RSA","e":"AQAB"}`,
		`{"kty":"OKP","crv":"Ed25519"}`,
		`{"kty":"RSA","n":1,"e":"AQAB"}`,
		`{"kty":"RSA","n":"a\"b","e":"AQAB"}`,
		`{"kty":"RSA","n":"ab","e":"AQAB","n":"cd"}`,
	} {
		if tp, err := Thumbprint(j); err == nil {
			t.Errorf("%s: thumbprint %q, want an error", j, tp)
		} else if strings.Contains(err.Error(), "AQAB") {
			t.Errorf("error repeats key data: %v", err)
		}
	}
}

// TestPublicKeySizes: EC coordinates and Ed25519 keys must have their
// exact sizes.
func TestPublicKeySizes(t *testing.T) {
	k := keys()
	ec := jwkFrom(t, jwkJSON(t, publicOf(k.ec256)))
	short := ec
	short.x = short.x[1:]
	long := ec
	long.y += "AA"
	for _, c := range []struct {
		name string
		k    jwk
		ok   bool
	}{
		{"P-256", ec, true},
		{"short x", short, false},
		{"long y", long, false},
		{"x with a line break", jwk{kty: "EC", crv: "P-256", x: ec.x[:10] + "\n" + ec.x[11:], y: ec.y}, false},
	} {
		if _, e := c.k.publicKey(mustAlg("ES256")); (e == nil) != c.ok {
			t.Errorf("%s: %v", c.name, e)
		}
	}
	ed := jwkFrom(t, jwkJSON(t, publicOf(k.ed)))
	if _, e := ed.publicKey(mustAlg("EdDSA")); e != nil {
		t.Fatal(e)
	}
	ed.x += "AA"
	if _, e := ed.publicKey(mustAlg("EdDSA")); e == nil {
		t.Fatal("33-byte Ed25519 key accepted")
	}
}

func jwkFrom(t *testing.T, s string) jwk {
	k, e := readJWK(s)
	if e != nil {
		t.Fatal(e)
	}
	return k
}
