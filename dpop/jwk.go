package dpop

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"math/big"

	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// RSA modulus bounds for proof keys. The floor is RFC 7518 §3.3's. The
// ceiling is ours: the client picks the key, and a huge modulus would make
// every one of its proofs slow to check; clients use 2048 to 4096 bits.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// privateMembers are the JWK members of private and symmetric keys (RFC 7518
// §6.2.2, §6.3.2 and §6.4, RFC 8037 §2): a proof carrying one has leaked
// its key, or is not a public-key proof at all.
var privateMembers = [...]string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// jwk holds the members of a proof's key that are read; values are
// unescaped.
type jwk struct {
	kty, crv, x, y, n, e string
	alg                  string
}

var strictB64 = base64.RawURLEncoding.Strict()

// member returns where the JWK member name goes, nil for one not read.
func (k *jwk) member(name string) *string {
	switch name {
	case "kty":
		return &k.kty
	case "crv":
		return &k.crv
	case "x":
		return &k.x
	case "y":
		return &k.y
	case "n":
		return &k.n
	case "e":
		return &k.e
	case "alg":
		return &k.alg
	}
	return nil
}

// readJWK reads the members of a jwk header parameter.
func readJWK(raw string) (jwk, *Error) {
	var k jwk
	var space [12]verifier.JSONMember
	members, err := verifier.ParseJSONObject(raw, space[:0])
	if err != nil {
		return k, errJWK
	}
	for _, m := range members {
		for _, p := range privateMembers {
			if m.Name == p {
				return k, errPrivateKey
			}
		}
		dst := k.member(m.Name)
		if dst == nil {
			continue
		}
		if verifier.JSONKind(m.Raw) != 's' {
			return k, errJWK
		}
		*dst = verifier.JSONUnquote(m.Raw)
	}
	return k, nil
}

// curves maps each ES algorithm to its curve and coordinate size.
var curves = map[verifier.Algorithm]struct {
	name  string
	curve elliptic.Curve
	size  int
}{
	verifier.ES256: {"P-256", elliptic.P256(), 32},
	verifier.ES384: {"P-384", elliptic.P384(), 48},
	verifier.ES512: {"P-521", elliptic.P521(), 66},
}

// publicKey turns the JWK into the key golang-jwt verifies alg with, or
// says why this JWK cannot sign alg.
func (k *jwk) publicKey(alg verifier.Algorithm) (any, *Error) {
	if k.alg != "" {
		// A JWK's alg restricts its key (RFC 7517 §4.4), as jwks does.
		if a, ok := parseAlgorithm(k.alg); !ok || a != alg {
			return nil, errKeyAlgorithm
		}
	}
	if !k.fits(alg) {
		return nil, errKeyAlgorithm
	}
	switch alg {
	case verifier.ES256, verifier.ES384, verifier.ES512:
		c := curves[alg]
		// An uncompressed point: 0x04 || x || y, each coordinate at its
		// full size (RFC 7518 §6.2.1.2).
		var buf [1 + 2*66]byte
		buf[0] = 4
		if !decodeExact(buf[1:1+c.size], k.x) || !decodeExact(buf[1+c.size:1+2*c.size], k.y) {
			return nil, errJWK
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(c.curve, buf[:1+2*c.size])
		if err != nil {
			return nil, errJWK // not on the curve
		}
		return pub, nil
	case verifier.EdDSA:
		pub := make(ed25519.PublicKey, ed25519.PublicKeySize)
		if !decodeExact(pub, k.x) {
			return nil, errJWK
		}
		return pub, nil
	}
	// RS* and PS*
	n, ok := decodeUint(k.n, maxRSABits/8)
	if !ok {
		return nil, errJWK
	}
	if n.BitLen() < minRSABits {
		return nil, errRSASize
	}
	e, ok := decodeUint(k.e, 4)
	if !ok || e.BitLen() > 31 || e.Int64() < 3 || e.Bit(0) == 0 {
		return nil, errJWK
	}
	return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
}

// decodeExact decodes base64url s into dst, which it must fill exactly.
func decodeExact(dst []byte, s string) bool {
	if len(s) != base64.RawURLEncoding.EncodedLen(len(dst)) || !isB64(s) {
		return false
	}
	n, err := strictB64.Decode(dst, []byte(s))
	return err == nil && n == len(dst)
}

// decodeUint reads a Base64urlUInt (RFC 7518 §2): a positive integer in
// the fewest octets, at most max of them. The fewest octets matter beyond
// style: the thumbprint hashes the text, so a padded modulus would be a
// second name for the same key.
func decodeUint(s string, max int) (*big.Int, bool) {
	if s == "" || len(s) > base64.RawURLEncoding.EncodedLen(max) || !isB64(s) {
		return nil, false
	}
	b, err := strictB64.DecodeString(s)
	if err != nil || len(b) == 0 || b[0] == 0 {
		return nil, false
	}
	return new(big.Int).SetBytes(b), true
}

// isB64 reports whether s holds only the base64url alphabet; the strict
// decoder would otherwise skip CR and LF.
func isB64(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// thumbprintLen is the length of a SHA-256 thumbprint in base64url.
const thumbprintLen = 43

// appendThumbprint appends the RFC 7638 thumbprint of k: base64url of the
// SHA-256 of its required members, in lexicographic order, with no white
// space. It fails for a key type without a thumbprint definition here, a
// missing member, or a value that JSON would have to escape (no key needs
// one, and escaping leaves room for two spellings).
func (k *jwk) appendThumbprint(dst []byte) ([]byte, bool) {
	var space [1200]byte // a 8192-bit modulus fits
	b := space[:0]
	ok := true
	add := func(name, value string, last bool) {
		if value == "" || needsEscape(value) {
			ok = false
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":"`...)
		b = append(b, value...)
		b = append(b, '"')
		if !last {
			b = append(b, ',')
		}
	}
	b = append(b, '{')
	switch k.kty {
	case "EC":
		add("crv", k.crv, false)
		add("kty", k.kty, false)
		add("x", k.x, false)
		add("y", k.y, true)
	case "RSA":
		add("e", k.e, false)
		add("kty", k.kty, false)
		add("n", k.n, true)
	case "OKP":
		add("crv", k.crv, false)
		add("kty", k.kty, false)
		add("x", k.x, true)
	default:
		return dst, false
	}
	b = append(b, '}')
	if !ok {
		return dst, false
	}
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.AppendEncode(dst, sum[:]), true
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' {
			return true
		}
	}
	return false
}

// Thumbprint returns the RFC 7638 SHA-256 thumbprint of a JSON Web Key, in
// base64url, as a DPoP-bound token's cnf.jkt holds it. RSA, EC and OKP keys
// are supported; members other than the required ones are ignored.
func Thumbprint(jwkJSON string) (string, error) {
	var space [16]verifier.JSONMember
	members, err := verifier.ParseJSONObject(jwkJSON, space[:0])
	if err != nil {
		return "", errors.New("JWK is not a JSON object: " + err.Error())
	}
	var k jwk
	for _, m := range members {
		dst := k.member(m.Name)
		if dst == nil || m.Name == "alg" { // a thumbprint has no alg
			continue
		}
		if verifier.JSONKind(m.Raw) != 's' {
			return "", errors.New("JWK member " + m.Name + " is not a string")
		}
		*dst = verifier.JSONUnquote(m.Raw)
	}
	if k.kty != "EC" && k.kty != "RSA" && k.kty != "OKP" {
		return "", errors.New("JWK kty is not RSA, EC or OKP")
	}
	out, ok := k.appendThumbprint(nil)
	if !ok {
		return "", errors.New("JWK lacks a member its thumbprint needs, or holds one that JSON must escape")
	}
	return string(out), nil
}
