// Command dpop is a DPoP client (RFC 9449) for trying jwtguard's `dpop`
// out: it keeps an ES256 key, prints its RFC 7638 thumbprint (the
// cnf.jkt an identity provider would put in a token bound to it), and
// signs proofs for requests. It uses only the Go standard library, so
// its proofs are made independently of jwtguard's own code.
//
//	go run ./example/dpop -key /tmp/dpop.pem -thumbprint
//	go run ./example/dpop -key /tmp/dpop.pem -token "$TOKEN" -method GET -url http://localhost:8080/api/whoami
//
// The key file is created (PKCS #8 PEM, mode 0600) when it does not
// exist. Each run prints a new proof: a proof is good for one request.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"time"
)

func main() {
	keyFile := flag.String("key", "", "ES256 private key, PEM; created when missing (required)")
	thumbprint := flag.Bool("thumbprint", false, "print the key's RFC 7638 thumbprint (cnf.jkt) and exit")
	token := flag.String("token", "", "access token the proof is for (sets ath)")
	method := flag.String("method", "GET", "HTTP method of the request (htm)")
	target := flag.String("url", "", "URL of the request (htu; query and fragment are dropped)")
	nonce := flag.String("nonce", "", "server nonce from a DPoP-Nonce header, if the server asks for one")
	flag.Parse()
	if err := run(*keyFile, *thumbprint, *token, *method, *target, *nonce); err != nil {
		fmt.Fprintln(os.Stderr, "dpop:", err)
		os.Exit(1)
	}
}

func run(keyFile string, thumbprint bool, token, method, target, nonce string) error {
	if keyFile == "" {
		return errors.New("-key is required")
	}
	key, err := loadOrCreateKey(keyFile)
	if err != nil {
		return err
	}
	jwk, err := publicJWK(key)
	if err != nil {
		return err
	}
	if thumbprint {
		fmt.Println(jwk.thumbprint())
		return nil
	}
	if target == "" {
		return errors.New("-url is required (or -thumbprint)")
	}
	htu, err := proofURL(target)
	if err != nil {
		return err
	}
	proof, err := sign(key, jwk, strings.ToUpper(method), htu, token, nonce)
	if err != nil {
		return err
	}
	fmt.Println(proof)
	return nil
}

// loadOrCreateKey reads a P-256 private key (PKCS #8 or SEC 1 PEM), or
// makes one and writes it to path when the file does not exist.
func loadOrCreateKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		out := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		// O_EXCL: two runs started at once must not each write a key.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return loadOrCreateKey(path)
		}
		if err != nil {
			return nil, err
		}
		if _, err := f.Write(out); err != nil {
			f.Close()
			return nil, err
		}
		return key, f.Close()
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	var parsed any
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		parsed, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s: a %s, want a PRIVATE KEY or EC PRIVATE KEY", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%s: not a P-256 key (ES256 needs one)", path)
	}
	return key, nil
}

// ecJWK is a P-256 public key as a JWK. Its fields are in lexicographic
// order, which RFC 7638 requires of the thumbprint's input, and it has no
// other members, so its JSON is that input exactly.
type ecJWK struct {
	Crv string `json:"crv"`
	Kty string `json:"kty"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func publicJWK(key *ecdsa.PrivateKey) (ecJWK, error) {
	pub, err := key.PublicKey.ECDH()
	if err != nil {
		return ecJWK{}, err
	}
	b := pub.Bytes() // 0x04 || X || Y, each 32 bytes
	enc := base64.RawURLEncoding.EncodeToString
	return ecJWK{Crv: "P-256", Kty: "EC", X: enc(b[1:33]), Y: enc(b[33:65])}, nil
}

// thumbprint is the RFC 7638 SHA-256 thumbprint, base64url: cnf.jkt.
func (k ecJWK) thumbprint() string {
	in, _ := json.Marshal(k)
	sum := sha256.Sum256(in)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// proofURL is the htu of a request to target: its scheme, host and path,
// without query and fragment (RFC 9449 §4.2).
func proofURL(target string) (string, error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("-url %q: want an absolute http(s) URL", target)
	}
	u.RawQuery, u.Fragment, u.RawFragment, u.User = "", "", "", nil
	return u.String(), nil
}

// sign makes the proof: a JWS with typ dpop+jwt and the public key in
// jwk, over htm, htu, iat, a random jti and, with a token, ath.
func sign(key *ecdsa.PrivateKey, jwk ecJWK, method, htu, token, nonce string) (string, error) {
	header, err := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk})
	if err != nil {
		return "", err
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding.EncodeToString
	claims := map[string]any{
		"jti": enc(jti),
		"htm": method,
		"htu": htu,
		"iat": time.Now().Unix(),
	}
	if token != "" {
		ath := sha256.Sum256([]byte(token))
		claims["ath"] = enc(ath[:])
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := enc(header) + "." + enc(payload)
	digest := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		return "", err
	}
	// JWS ES256 signatures are R || S, 32 bytes each (RFC 7518 §3.4).
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + enc(sig), nil
}
