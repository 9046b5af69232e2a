package jwks

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// maxKeys bounds the usable keys kept from one document. A token without a
// kid is tried against every key, so a document with thousands of keys
// would turn each such token into thousands of signature checks; real
// providers publish a handful.
const maxKeys = 100

// maxRSABits bounds the modulus: verifying with a huge one is slow, and no
// provider uses more.
const maxRSABits = 16384

// jwk holds the members of a JSON Web Key that are read. Everything else,
// x5c, x5u and x5t included, is ignored: a key comes only from its own
// parameters, never from a certificate or a URL the document points to.
type jwk struct {
	Kty    string   `json:"kty"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
	Alg    string   `json:"alg"`
	Kid    string   `json:"kid"`
	Crv    string   `json:"crv"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
}

// skipped says why one key of a document was left out. quiet is set for
// keys that are normal in a JWK Set but not for us (encryption keys,
// symmetric keys), so that they are not logged as problems.
type skipped struct {
	kid    string
	reason string
	quiet  bool
}

// parsedKey is one usable key with its fingerprint, which identifies the
// key's kid, algorithm binding and material across fetches, so that a
// re-ordered or re-formatted document does not count as a change.
type parsedKey struct {
	key   *verifier.Key
	print string
}

var errNotObject = errors.New("not a JSON object with a \"keys\" array")

// parseSet reads a JWK Set document. A malformed document is an error;
// individual keys that cannot be used are reported in skips and do not
// fail the document (the caller refuses one with no usable key).
func parseSet(body []byte, issuer string) (keys []parsedKey, skips []skipped, err error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, nil, fmt.Errorf("malformed JSON: %v", err)
	}
	if doc.Keys == nil {
		return nil, nil, errNotObject
	}
	for _, raw := range doc.Keys {
		var j jwk
		if err := json.Unmarshal(raw, &j); err != nil {
			skips = append(skips, skipped{reason: "not a JSON Web Key: " + err.Error()})
			continue
		}
		pk, skip := parseKey(&j)
		if skip != nil {
			skips = append(skips, *skip)
			continue
		}
		if len(keys) == maxKeys {
			skips = append(skips, skipped{kid: j.Kid, reason: fmt.Sprintf("more than %d usable keys", maxKeys)})
			continue
		}
		pk.key.ID = j.Kid
		pk.key.Issuer = issuer
		keys = append(keys, pk)
	}
	return keys, skips, nil
}

// parseKey turns one JWK into a key, or says why it is not used.
func parseKey(j *jwk) (parsedKey, *skipped) {
	skip := func(quiet bool, format string, args ...any) (parsedKey, *skipped) {
		return parsedKey{}, &skipped{kid: j.Kid, reason: fmt.Sprintf(format, args...), quiet: quiet}
	}
	if j.Use != "" && j.Use != "sig" {
		return skip(true, "use %q is not \"sig\"", j.Use)
	}
	if j.KeyOps != nil && !slices.Contains(j.KeyOps, "verify") {
		return skip(true, "key_ops does not include \"verify\"")
	}
	var (
		pub      any
		material string
		err      error
	)
	switch j.Kty {
	case "RSA":
		pub, material, err = rsaKey(j)
	case "EC":
		pub, material, err = ecKey(j)
	case "OKP":
		pub, material, err = okpKey(j)
	case "oct":
		return skip(true, "symmetric (oct) keys are never taken from a JWK Set")
	case "":
		return skip(false, "no kty")
	default:
		return skip(true, "unsupported kty %q", j.Kty)
	}
	if err != nil {
		return skip(false, "%s key: %v", j.Kty, err)
	}
	key, err := verifier.NewPublicKey(pub)
	if err != nil {
		return skip(false, "%v", err)
	}
	if j.Alg != "" {
		alg, ok := verifier.ParseAlgorithm(j.Alg)
		if !ok {
			return skip(false, "alg %q is not a supported signature algorithm", j.Alg)
		}
		if key, err = key.WithAlgorithm(alg); err != nil {
			return skip(false, "alg %q: %v", j.Alg, err)
		}
	}
	return parsedKey{key: key, print: j.Kid + "\x00" + j.Alg + "\x00" + material}, nil
}

func rsaKey(j *jwk) (any, string, error) {
	n, err := decodeParam("n", j.N)
	if err != nil {
		return nil, "", err
	}
	e, err := decodeParam("e", j.E)
	if err != nil {
		return nil, "", err
	}
	// RFC 7518 §6.3.1.2 has e as a big-endian integer; crypto/rsa wants
	// an int, and an even or tiny exponent is not a real RSA key.
	e = trimZeros(e)
	if len(e) > 4 {
		return nil, "", errors.New("exponent too large")
	}
	var exp int
	for _, b := range e {
		exp = exp<<8 | int(b)
	}
	if exp < 3 || exp%2 == 0 || exp > 1<<31-1 {
		return nil, "", fmt.Errorf("invalid exponent %d", exp)
	}
	modulus := new(big.Int).SetBytes(n)
	if modulus.BitLen() > maxRSABits {
		return nil, "", fmt.Errorf("modulus is %d bits; at most %d are accepted", modulus.BitLen(), maxRSABits)
	}
	return &rsa.PublicKey{N: modulus, E: exp}, "RSA\x00" + string(trimZeros(n)) + "\x00" + string(e), nil
}

func ecKey(j *jwk) (any, string, error) {
	var curve elliptic.Curve
	switch j.Crv {
	case "P-256":
		curve = elliptic.P256()
	case "P-384":
		curve = elliptic.P384()
	case "P-521":
		curve = elliptic.P521()
	default:
		return nil, "", fmt.Errorf("unsupported crv %q", j.Crv)
	}
	x, err := decodeParam("x", j.X)
	if err != nil {
		return nil, "", err
	}
	y, err := decodeParam("y", j.Y)
	if err != nil {
		return nil, "", err
	}
	// RFC 7518 §6.2.1.2: coordinates are the full size of the field.
	size := (curve.Params().BitSize + 7) / 8
	if len(x) != size || len(y) != size {
		return nil, "", fmt.Errorf("x and y must be %d bytes for %s", size, j.Crv)
	}
	point := make([]byte, 0, 1+2*size)
	point = append(append(append(point, 4), x...), y...)
	// This parser refuses points that are not on the curve, so an invalid
	// key cannot reach the signature arithmetic.
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return nil, "", err
	}
	return pub, "EC\x00" + j.Crv + "\x00" + string(point), nil
}

func okpKey(j *jwk) (any, string, error) {
	if j.Crv != "Ed25519" {
		return nil, "", fmt.Errorf("unsupported crv %q", j.Crv)
	}
	x, err := decodeParam("x", j.X)
	if err != nil {
		return nil, "", err
	}
	if len(x) != ed25519.PublicKeySize {
		return nil, "", fmt.Errorf("x must be %d bytes", ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(x), "OKP\x00Ed25519\x00" + string(x), nil
}

// decodeParam decodes a base64url key parameter. RFC 7518 says unpadded;
// padding is tolerated because some providers add it.
func decodeParam(name, value string) ([]byte, error) {
	if value == "" {
		return nil, fmt.Errorf("missing %s", name)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(value, "="))
	if err != nil {
		return nil, fmt.Errorf("%s is not base64url", name)
	}
	return b, nil
}

func trimZeros(b []byte) []byte {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b
}
