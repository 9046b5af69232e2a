package verifier

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"math/bits"
	"strings"
	"sync"

	"github.com/golang-jwt/jwt/v5"
)

// Algorithm is one JWS algorithm, as a bit so that sets of them are cheap.
type Algorithm uint16

// The algorithms jwtguard verifies. "none" is deliberately absent.
const (
	HS256 Algorithm = 1 << iota
	HS384
	HS512
	RS256
	RS384
	RS512
	PS256
	PS384
	PS512
	ES256
	ES384
	ES512
	EdDSA
)

// AlgorithmSet is a set of algorithms.
type AlgorithmSet uint16

// AllAlgorithms is every algorithm jwtguard knows.
const AllAlgorithms = AlgorithmSet(EdDSA<<1 - 1)

const (
	hmacAlgorithms  = AlgorithmSet(HS256 | HS384 | HS512)
	rsaAlgorithms   = AlgorithmSet(RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
	asymmetricAlgos = AllAlgorithms &^ hmacAlgorithms
)

var algorithmNames = [...]string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// methods maps each algorithm to golang-jwt's implementation, which does the
// signature arithmetic. Indexed by bit position; read-only after init.
var methods = [...]jwt.SigningMethod{
	jwt.SigningMethodHS256, jwt.SigningMethodHS384, jwt.SigningMethodHS512,
	jwt.SigningMethodRS256, jwt.SigningMethodRS384, jwt.SigningMethodRS512,
	jwt.SigningMethodPS256, jwt.SigningMethodPS384, jwt.SigningMethodPS512,
	jwt.SigningMethodES256, jwt.SigningMethodES384, jwt.SigningMethodES512,
	jwt.SigningMethodEdDSA,
}

func (a Algorithm) index() int { return bits.TrailingZeros16(uint16(a)) }

func (a Algorithm) String() string {
	if a == 0 || a&(a-1) != 0 || a.index() >= len(algorithmNames) {
		return "unknown"
	}
	return algorithmNames[a.index()]
}

// ParseAlgorithm returns the algorithm with the given JWS name. Names are
// case-sensitive, as in RFC 7518; "none" is never accepted.
func ParseAlgorithm(name string) (Algorithm, bool) {
	for i, n := range algorithmNames {
		if n == name {
			return Algorithm(1 << i), true
		}
	}
	return 0, false
}

// Has reports whether a is in the set.
func (s AlgorithmSet) Has(a Algorithm) bool { return s&AlgorithmSet(a) != 0 }

// Names lists the set's algorithms in a fixed order.
func (s AlgorithmSet) Names() []string {
	var out []string
	for i, n := range algorithmNames {
		if s&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

func (s AlgorithmSet) String() string { return strings.Join(s.Names(), ", ") }

// Key is one verification key, bound to the algorithms its type can verify
// (and, for a JWK with an "alg" member, to that one algorithm).
type Key struct {
	// ID is the key's kid; empty for keys from secret and public_key.
	ID string
	// Issuer, when set, restricts the key to tokens whose iss equals it.
	Issuer string

	algs     AlgorithmSet
	material any          // []byte, *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	macs     [3]sync.Pool // *macState for HS256/384/512, keyed once
}

// macState is a keyed HMAC with room for its output, so that a check
// allocates nothing.
type macState struct {
	hash.Hash
	sum [sha512.Size]byte
}

// Algorithms returns the algorithms the key verifies.
func (k *Key) Algorithms() AlgorithmSet { return k.algs }

// MinSecretLength is the shortest HMAC secret accepted, in bytes: RFC 7518
// §3.2 requires a key at least as long as the hash output.
const MinSecretLength = 32

// NewHMACKey makes a key from an HMAC secret. The key is bound to the HS
// algorithms whose hash output is no longer than the secret (RFC 7518 §3.2),
// so a 32-byte secret verifies HS256 only.
func NewHMACKey(secret []byte) (*Key, error) {
	if len(secret) < MinSecretLength {
		return nil, fmt.Errorf("HMAC secret is %d bytes; at least %d are required", len(secret), MinSecretLength)
	}
	algs := AlgorithmSet(HS256)
	if len(secret) >= 48 {
		algs |= AlgorithmSet(HS384)
	}
	if len(secret) >= 64 {
		algs |= AlgorithmSet(HS512)
	}
	k := &Key{algs: algs, material: append([]byte(nil), secret...)}
	for i, h := range []func() hash.Hash{sha256.New, sha512.New384, sha512.New} {
		k.macs[i].New = func() any { return &macState{Hash: hmac.New(h, k.material.([]byte))} }
	}
	return k, nil
}

// DecodeSecret turns a configured secret into key bytes: "base64:<b64>" is
// decoded (standard or URL-safe alphabet, padding optional), anything else
// is taken as its UTF-8 bytes.
func DecodeSecret(value string) ([]byte, error) {
	b64, ok := strings.CutPrefix(value, "base64:")
	if !ok {
		return []byte(value), nil
	}
	b64 = strings.TrimRight(b64, "=")
	enc := base64.RawStdEncoding
	if strings.ContainsAny(b64, "-_") {
		enc = base64.RawURLEncoding
	}
	key, err := enc.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("secret: invalid base64 after \"base64:\": %v", err)
	}
	return key, nil
}

// minRSABits is the smallest RSA modulus accepted (RFC 7518 §3.3).
const minRSABits = 2048

// NewPublicKey binds a public key to the algorithms of its type: RSA to
// RS* and PS*, ECDSA to the one ES algorithm of its curve, Ed25519 to EdDSA.
func NewPublicKey(pub any) (*Key, error) {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if p.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key is %d bits; at least %d are required", p.N.BitLen(), minRSABits)
		}
		return &Key{algs: rsaAlgorithms, material: p}, nil
	case *ecdsa.PublicKey:
		var alg Algorithm
		switch p.Curve {
		case elliptic.P256():
			alg = ES256
		case elliptic.P384():
			alg = ES384
		case elliptic.P521():
			alg = ES512
		default:
			return nil, fmt.Errorf("unsupported ECDSA curve %s", p.Curve.Params().Name)
		}
		return &Key{algs: AlgorithmSet(alg), material: p}, nil
	case ed25519.PublicKey:
		return &Key{algs: AlgorithmSet(EdDSA), material: p}, nil
	}
	return nil, fmt.Errorf("unsupported public key type %T", pub)
}

// ParsePublicKeyPEM reads one public key from PEM: a SubjectPublicKeyInfo
// ("PUBLIC KEY") or an X.509 certificate ("CERTIFICATE"). A file with more
// than one key is refused rather than guessed at.
func ParsePublicKeyPEM(data []byte) (*Key, error) {
	var found *pem.Block
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch {
		case strings.Contains(block.Type, "PRIVATE KEY"):
			return nil, errors.New("PEM holds a private key; give the public key (openssl pkey -pubout) or the certificate")
		case block.Type == "PUBLIC KEY" || block.Type == "CERTIFICATE" || block.Type == "RSA PUBLIC KEY":
			if found != nil {
				return nil, errors.New("PEM holds more than one key; put one key in each file")
			}
			found = block
		}
	}
	if found == nil {
		return nil, errors.New("no PUBLIC KEY or CERTIFICATE block in PEM")
	}
	var pub any
	var err error
	switch found.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(found.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(found.Bytes)
	default:
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(found.Bytes); err == nil {
			pub = cert.PublicKey
		}
	}
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %v", found.Type, err)
	}
	return NewPublicKey(pub)
}

// WithAlgorithm returns a copy of k restricted to alg, as a JWK's "alg"
// member restricts its key; it fails if k cannot verify alg at all.
func (k *Key) WithAlgorithm(alg Algorithm) (*Key, error) {
	if !k.algs.Has(alg) {
		return nil, fmt.Errorf("a %s key cannot verify %s", k.kind(), alg)
	}
	if _, ok := k.material.([]byte); ok {
		return nil, errors.New("HMAC keys cannot be restricted")
	}
	return &Key{ID: k.ID, Issuer: k.Issuer, algs: AlgorithmSet(alg), material: k.material}, nil
}

func (k *Key) kind() string {
	switch k.material.(type) {
	case []byte:
		return "HMAC"
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		return "ECDSA"
	}
	return "Ed25519"
}

// verify checks sig over the signing input with this key and alg; the
// caller has already checked that the key is bound to alg.
func (k *Key) verify(alg Algorithm, signingInput string, sig []byte) bool {
	if AlgorithmSet(alg)&hmacAlgorithms != 0 {
		return k.verifyHMAC(alg, signingInput, sig)
	}
	return methods[alg.index()].Verify(signingInput, sig, k.material) == nil
}

// verifyHMAC does what golang-jwt's HMAC Verify does, with a pooled,
// already keyed HMAC state: keying one costs more than hashing a token.
func (k *Key) verifyHMAC(alg Algorithm, signingInput string, sig []byte) bool {
	pool := &k.macs[alg.index()]
	mac := pool.Get().(*macState)
	mac.Reset()
	mac.Write(bytesOf(signingInput)) // no copy: the hash only reads it
	ok := hmac.Equal(mac.Sum(mac.sum[:0]), sig)
	pool.Put(mac)
	return ok
}
